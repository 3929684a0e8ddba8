"""The one matmul every layer uses (plain, LoRA, quantised): x [..., in] @ kernel [in, ...]."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def matmul(x: jax.Array, kernel: jax.Array, dtype: jnp.dtype,
           out_dtype: jnp.dtype | None = None) -> jax.Array:
  """x [..., in] @ kernel [in, ...] in `dtype`."""
  # Tokens flattened to one dim: the weight gradient then contracts a single
  # dim, which XLA:CPU's matmul takes transposed in place.
  lead = x.shape[:-1]
  y = jax.lax.dot_general(
      x.reshape(-1, x.shape[-1]).astype(dtype), kernel.astype(dtype),
      (((1,), (0,)), ((), ())), preferred_element_type=out_dtype)
  return y.reshape(*lead, *kernel.shape[1:])
