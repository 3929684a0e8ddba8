"""Dropout shared by every model and head."""

import jax
import jax.numpy as jnp


def fold(key: jax.Array | None, i: int | jax.Array) -> jax.Array | None:
  """The key of a sub-part `i` (a layer, a branch), or None when dropout is off."""
  return None if key is None else jax.random.fold_in(key, i)


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
  """Inverted dropout; identity when key is None (evaluation) or rate is 0."""
  if key is None or rate == 0.0:
    return x
  # One 16-bit draw per element instead of bernoulli's 32-bit uniform: on CPU
  # the random draws are a fifth of the train step, and this halves them.
  # The drop probability is rate rounded to a multiple of 2**-16 (0.1 ->
  # 0.100006), and the scale uses that same probability, so E[out] == x.
  cut = round(rate * 65536)
  bits = jax.random.bits(key, (x.size,), jnp.uint16).reshape(x.shape)
  return jnp.where(bits >= jnp.uint16(cut),
                   x * jnp.asarray(65536 / (65536 - cut), x.dtype),
                   jnp.zeros((), x.dtype))
