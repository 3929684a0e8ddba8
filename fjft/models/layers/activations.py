"""HF `hidden_act` / `activation_function` names -> functions, for every family."""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np


def gelu_erf(x: jax.Array) -> jax.Array:
  """Exact GELU, x * Phi(x), written with erf as torch does.

  jax.nn.gelu(approximate=False) goes through erfc, whose CPU lowering (and
  its derivative) costs ~3x more than erf's; the values agree to float32
  rounding.
  """
  return x * (0.5 + 0.5 * jax.lax.erf(x * np.sqrt(0.5).astype(x.dtype)))


def _gelu_tanh(x: jax.Array) -> jax.Array:
  return jax.nn.gelu(x, approximate=True)


# "gelu" is the exact erf form, as in HF; gelu_new / gelu_pytorch_tanh the tanh
# approximation (GPT-2's).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": gelu_erf,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}
