"""Sentence vectors from an encoder's token states: the mean of the real tokens or the
[CLS] token, optionally L2-normalised (as sentence-transformers' Pooling and Normalize)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def pool(hidden: jax.Array, mask: jax.Array, mode: str, normalize: bool) -> jax.Array:
  """[B, T, H] hidden states -> [B, H] float32 sentence embeddings."""
  hidden = hidden.astype(jnp.float32)
  if mode == "cls":
    out = hidden[:, 0]
  else:
    m = mask.astype(jnp.float32)[..., None]
    out = (hidden * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
  if normalize:
    # sentence-transformers' Normalize: x / max(||x||, 1e-12). Written as the root of a
    # clamped square so that a padding row (all zeros) has a zero gradient, not NaN.
    sq = jnp.sum(out * out, axis=-1, keepdims=True)
    out = out * jax.lax.rsqrt(jnp.maximum(sq, 1e-24))
  return out
