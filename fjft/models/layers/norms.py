"""The norms of every family: LayerNorm (BERT, GPT-2) and RMSNorm (Llama), with their
statistics always computed in float32 whatever the compute dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fjft.models.layers.linear import param


class LayerNorm(nnx.Module):
  """(x - mean) / std * scale + bias; `stack` gives its params a leading layer axis;
  `bias=False`: no bias param (ModernBERT's norm_bias=False)."""

  def __init__(self, dim: int, eps: float, *, stack: int | None = None, rngs: nnx.Rngs,
               bias: bool = True):
    self.eps = eps
    self.scale = param(rngs, jax.nn.initializers.ones, (dim,), ("embed",), stack)
    self.bias = (param(rngs, jax.nn.initializers.zeros, (dim,), ("embed",), stack)
                 if bias else None)

  def __call__(self, x: jax.Array, dtype: jnp.dtype) -> jax.Array:
    x = x.astype(jnp.float32)
    centered = x - jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(centered), axis=-1, keepdims=True)
    y = centered * jax.lax.rsqrt(var + self.eps)
    y = y * self.scale[...]
    return (y if self.bias is None else y + self.bias[...]).astype(dtype)


class RMSNorm(nnx.Module):
  """x / rms(x) * scale."""

  def __init__(self, dim: int, eps: float, *, stack: int | None = None, rngs: nnx.Rngs):
    self.eps = eps
    self.scale = param(rngs, jax.nn.initializers.ones, (dim,), ("embed",), stack)

  def __call__(self, x: jax.Array, dtype: jnp.dtype) -> jax.Array:
    x = x.astype(jnp.float32)
    y = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.eps)
    return (y * self.scale[...]).astype(dtype)
