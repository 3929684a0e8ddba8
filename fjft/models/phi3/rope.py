"""Phi-3's rotary embeddings as transformers computes them: default or longrope
frequencies over the first rotary_dim dims of each head (partial_rotary_factor), cos
and sin scaled by longrope's attention factor.

Which longrope factors a call uses: transformers picks the long factors when the
longest sequence of the call (its largest position + 1, over the batch) exceeds
original_max_position_embeddings, the short ones otherwise. fjft does the same for a
call without a KV cache. With a cache it picks by the cache's length, the longest
sequence the cache can hold (as llama.cpp picks by its context size): every key in
the cache then has the same frequencies, so a cached decode equals one full forward
of a sequence that long. transformers instead recomputes its cache from scratch once
a generation crosses the original length.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from fjft.models.llama.rope import apply_rope
from fjft.models.phi3.config import Config


def _exponents(cfg: Config) -> np.ndarray:
  dim = cfg.rotary_dim
  return np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)


def inv_freq(cfg: Config, long: bool = False) -> np.ndarray:
  """Inverse frequencies [rotary_dim / 2], float32, in transformers' operation order
  (longrope: the short factors, or the long ones if `long`)."""
  base = np.power(np.float32(cfg.rope_theta), _exponents(cfg)).astype(np.float32)
  if cfg.rope_scaling is not None:
    factors = cfg.rope_scaling["long_factor" if long else "short_factor"]
    base = (np.asarray(factors, np.float32) * base).astype(np.float32)
  return (np.float32(1.0) / base).astype(np.float32)


def attention_factor(cfg: Config) -> float:
  """The factor on cos and sin (1 without longrope), as transformers' longrope."""
  scaling = cfg.rope_scaling
  if scaling is None:
    return 1.0
  if scaling.get("attention_factor") is not None:
    return float(scaling["attention_factor"])
  original = cfg.original_max_position_embeddings
  factor = scaling.get("factor")
  if factor is None:
    factor = cfg.max_position_embeddings / original
  if factor <= 1.0:
    return 1.0
  return math.sqrt(1 + math.log(factor) / math.log(original))


def cos_sin(cfg: Config, positions: jax.Array, cache_len: int | None
            ) -> tuple[jax.Array, jax.Array]:
  """cos and sin [B, T, rotary_dim] of the tokens at `positions` ([B, T] int32);
  `cache_len` the KV cache's length, or None (the module doc: short or long)."""
  freqs = jnp.asarray(inv_freq(cfg))
  if cfg.rope_scaling is not None:
    original = cfg.original_max_position_embeddings
    long = (jnp.asarray(cache_len > original) if cache_len is not None
            else jnp.max(positions) + 1 > original)
    freqs = jnp.where(long, jnp.asarray(inv_freq(cfg, long=True)), freqs)
  angles = positions.astype(jnp.float32)[..., None] * freqs
  angles = jnp.concatenate([angles, angles], axis=-1)
  scale = jnp.float32(attention_factor(cfg))
  return jnp.cos(angles) * scale, jnp.sin(angles) * scale


def apply_partial_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotates the first cos.shape[-1] dims of x [B, T, N, D] (HF half layout); the rest
  pass through."""
  rotary = cos.shape[-1]
  if rotary == x.shape[-1]:
    return apply_rope(x, cos, sin)
  return jnp.concatenate([apply_rope(x[..., :rotary], cos, sin), x[..., rotary:]], axis=-1)
