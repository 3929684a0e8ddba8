"""An embedding table (token, position or token-type rows), as every family has."""

from __future__ import annotations

import jax
from flax import nnx

from fjft.models.layers.linear import Axes, param


class Embed(nnx.Module):
  """`embedding` [num, dim], drawn N(0, init_std) as HF initialises it."""

  def __init__(self, num: int, dim: int, axes: Axes, init_std: float, *, rngs: nnx.Rngs):
    self.embedding = param(rngs, jax.nn.initializers.normal(init_std), (num, dim), axes, None)
