"""The Linear layer every family uses, with its two fine-tuning additions: a LoRA adapter
(fjft.models.lora) and a quantised frozen kernel (fjft.models.quant)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from fjft.models.layers import quant
from fjft.models.layers.dropout import dropout
from fjft.models.layers.matmul import matmul

Axes = tuple[str | None, ...]


def param(rngs: nnx.Rngs, init: Callable[..., jax.Array],
          shape: tuple[int, ...], axes: Axes, stack: int | None) -> nnx.Param:
  """A float32 Param; `stack` prepends a ("layers",) axis of that size."""
  if stack is not None:
    shape, axes = (stack, *shape), ("layers", *axes)
  return nnx.Param(init(rngs.params(), shape, jnp.float32),
                   out_sharding=axes, eager_sharding=False)


class Linear(nnx.Module):
  """x @ kernel (+ bias); kernel [in, *out] as HF Linear.weight transposed.

  fjft.models.lora may add lora_a [in, r] and lora_b [r, *out] (with the static
  lora_scale and lora_dropout): the output gains lora_scale * dropout(x) @ A @ B.
  fjft.models.quant may replace the kernel by its quantised form (`quantized` names
  the format, kernel_scale holds the scales): it is dequantised inside the matmul.
  """

  # Absent unless added: class attributes are not part of the module's state.
  lora_a = lora_b = kernel_scale = None
  lora_scale, lora_dropout, quantized = 1.0, 0.0, ""

  def __init__(self, in_features: int, out_shape: tuple[int, ...],
               kernel_axes: Axes, bias_axes: Axes | None, init_std: float, *,
               stack: int | None, rngs: nnx.Rngs):
    self.kernel = param(rngs, jax.nn.initializers.normal(init_std),
                        (in_features, *out_shape), kernel_axes, stack)
    self.bias = (None if bias_axes is None else
                 param(rngs, jax.nn.initializers.zeros, out_shape, bias_axes,
                       stack))

  def __call__(self, x: jax.Array, dtype: jnp.dtype,
               key: jax.Array | None = None) -> jax.Array:
    """`key` draws the adapter's dropout (training only); the base layer has none."""
    if self.quantized:
      y = quant.frozen_matmul(x, self.kernel[...], self.kernel_scale[...], self.quantized,
                              jnp.dtype(dtype))
    else:
      y = matmul(x, self.kernel[...], dtype)
    if self.lora_a is not None:
      low = matmul(dropout(x, self.lora_dropout, key), self.lora_a[...], dtype)
      y = y + matmul(low * jnp.asarray(self.lora_scale, dtype), self.lora_b[...], dtype)
    if self.bias is not None:
      y = y + self.bias[...].astype(dtype)
    return y
