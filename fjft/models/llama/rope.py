"""Rotary position embeddings as transformers computes them (default, linear and
llama3 scaling), so that angles agree to float32 rounding."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from fjft.models.llama.config import Config


def rope_inv_freq(cfg: Config) -> np.ndarray:
  """Inverse RoPE frequencies [head_dim / 2], float32, as transformers.

  Same float32 operation order as transformers' rope init functions, so the
  angles agree to rounding.
  """
  dim = cfg.head_dim
  exponent = np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)
  inv_freq = (np.float32(1.0) /
              np.power(np.float32(cfg.rope_theta), exponent)).astype(np.float32)
  scaling = cfg.rope_scaling
  if scaling is None:
    return inv_freq
  factor = np.float32(scaling["factor"])
  if scaling["rope_type"] == "linear":
    return inv_freq / factor
  # llama3: long wavelengths slowed by `factor`, short ones kept, and a
  # smooth blend in between.
  low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
  old_len = scaling["original_max_position_embeddings"]
  low_wavelen, high_wavelen = old_len / low, old_len / high
  wavelen = np.float32(2 * math.pi) / inv_freq
  scaled = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
  smooth = ((np.float32(old_len) / wavelen - np.float32(low)) /
            np.float32(high - low))
  blended = (1 - smooth) * scaled / factor + smooth * scaled
  medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
  return np.where(medium, blended, scaled).astype(np.float32)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotates [B,T,N,D] by per-token angles; cos/sin [B,T,D]; HF half layout."""
  half = x.shape[-1] // 2
  xf = x.astype(jnp.float32)
  rotated = jnp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
  out = xf * cos[:, :, None] + rotated * sin[:, :, None]
  return out.astype(x.dtype)
