"""Quantised frozen kernels for QLoRA-style runs: stored small, dequantised in the matmul.

Formats of a kernel [in, *out] (one layer's; stacked kernels add a leading layer axis):
  "int8": int8 [in, *out] and a float32 scale per output channel [*out] (absmax / 127).
          The scale is applied after the matmul, so the int8 values enter it as they are.
  "nf4":  4-bit NormalFloat codes, two per uint8 along the input axis [in / 2, *out], and
          a float32 absmax per block of 64 inputs [in / 64, *out] (QLoRA's data type,
          without its double quantisation of the absmax).
"""

from __future__ import annotations

import functools
import math
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from fjft.errors import ConfigError
from fjft.models.layers.matmul import matmul

KINDS = ("int8", "nf4")
NF4_BLOCK = 64


def _nf4_codebook() -> np.ndarray:
  # NF4 (Dettmers et al. 2023): quantiles of N(0, 1) for 8 positive and 7 negative levels
  # plus an exact zero, scaled into [-1, 1]; `offset` keeps the extreme quantiles finite.
  offset = 0.9677083
  ppf = statistics.NormalDist().inv_cdf
  pos = [ppf(p) for p in np.linspace(offset, 0.5, 9)[:-1]]
  neg = [-ppf(p) for p in np.linspace(offset, 0.5, 8)[:-1]]
  values = np.sort(np.asarray(pos + [0.0] + neg))
  return (values / np.abs(values).max()).astype(np.float32)


NF4 = _nf4_codebook()


def check(kind: str, in_features: int, where: str) -> None:
  if kind not in KINDS:
    raise ConfigError(f"config field peft.quantize must be '', 'int8' or 'nf4' (got {kind!r})")
  if kind == "nf4" and in_features % NF4_BLOCK:
    raise ConfigError(f"peft.quantize='nf4': {where} has {in_features} input features, not a"
                      f" multiple of the block size {NF4_BLOCK}; use peft.quantize='int8'")


def quantize(kernel: jax.Array, kind: str) -> tuple[jax.Array, jax.Array]:
  """(stored kernel, scale) of one layer's float kernel [in, *out]."""
  w = jnp.asarray(kernel, jnp.float32)
  if kind == "int8":
    scale = jnp.max(jnp.abs(w), axis=0) / 127.0
    safe = jnp.where(scale > 0, scale, 1.0)
    return jnp.clip(jnp.round(w / safe), -127, 127).astype(jnp.int8), safe
  blocks = w.reshape(w.shape[0] // NF4_BLOCK, NF4_BLOCK, *w.shape[1:])
  absmax = jnp.max(jnp.abs(blocks), axis=1)
  safe = jnp.where(absmax > 0, absmax, 1.0)
  normed = (blocks / safe[:, None]).reshape(w.shape)
  # nearest code: the codebook is sorted, so compare with the midpoints between codes
  codes = jnp.searchsorted(jnp.asarray((NF4[1:] + NF4[:-1]) / 2), normed).astype(jnp.uint8)
  return (codes[0::2] | (codes[1::2] << 4)).astype(jnp.uint8), safe


def dequantize(q: jax.Array, scale: jax.Array, kind: str, dtype=jnp.float32) -> jax.Array:
  """The float kernel [in, *out] of one layer's stored kernel."""
  if kind == "int8":
    return q.astype(dtype) * scale.astype(dtype)
  codes = jnp.stack([q & 15, q >> 4], axis=1).reshape(q.shape[0] * 2, *q.shape[1:])
  w = jnp.asarray(NF4, dtype)[codes]
  w = w.reshape(w.shape[0] // NF4_BLOCK, NF4_BLOCK, *w.shape[1:]) * scale.astype(dtype)[:, None]
  return w.reshape(codes.shape)


def _forward(x, q, scale, kind, dtype):
  if kind == "int8":
    # a per-output-channel scale commutes with the matmul: the int8 values go in as they
    # are and the [tokens, out] result is scaled
    return matmul(x, q, dtype) * scale.astype(dtype)
  return matmul(x, dequantize(q, scale, kind, dtype), dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def frozen_matmul(x: jax.Array, q: jax.Array, scale: jax.Array, kind: str, dtype) -> jax.Array:
  """x @ dequantize(q, scale) for a frozen quantised kernel.

  Its gradient flows to x only, and the backward pass dequantises the kernel again: left
  to autodiff, every layer's dequantised float kernel would be kept from the forward pass
  to the backward one, more memory than the float model's own weights. (Measured with
  XLA's memory analysis: that holds under scanned layers; with unrolled layers XLA:CPU
  still holds every layer's float kernel at once, so quantised runs want scan_layers.)
  """
  return _forward(x, q, scale, kind, dtype)


def _fwd(x, q, scale, kind, dtype):
  return _forward(x, q, scale, kind, dtype), (q, scale, jnp.zeros((), x.dtype))


def _bwd(kind, dtype, res, dy):
  q, scale, x_like = res
  n_out = math.prod(dy.shape[dy.ndim - (q.ndim - 1):])
  lead = dy.shape[:dy.ndim - (q.ndim - 1)]
  if kind == "int8":
    dy, w = dy * scale.astype(dy.dtype), q
  else:
    w = dequantize(q, scale, kind, dtype)
  dx = jax.lax.dot_general(dy.reshape(-1, n_out).astype(dtype),
                           w.reshape(w.shape[0], -1).astype(dtype),
                           (((1,), (1,)), ((), ())))
  return (dx.reshape(*lead, -1).astype(x_like.dtype),
          np.zeros(q.shape, jax.dtypes.float0), jnp.zeros_like(scale))


frozen_matmul.defvjp(_fwd, _bwd)
