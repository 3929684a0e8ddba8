"""Dropout: drop rate, unbiasedness, and identity at evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fjft.models.layers.dropout import dropout


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_drops_at_the_rate_and_keeps_the_mean(rate):
  x = jnp.ones((64, 64, 64), jnp.float32)
  y = np.asarray(dropout(x, rate, jax.random.key(0)))
  dropped = np.mean(y == 0.0)
  # 262,144 draws: the binomial standard error is under 0.001
  assert abs(dropped - rate) < 0.005
  assert abs(y.mean() - 1.0) < 0.01
  np.testing.assert_allclose(np.unique(y), [0.0, 1.0 / (1.0 - rate)], rtol=1e-4)


def test_identity_without_key_or_rate():
  x = jnp.arange(12.0).reshape(3, 4)
  assert dropout(x, 0.1, None) is x
  assert dropout(x, 0.0, jax.random.key(0)) is x


def test_different_keys_drop_different_units():
  x = jnp.ones((4096,))
  a = dropout(x, 0.5, jax.random.key(1))
  b = dropout(x, 0.5, jax.random.key(2))
  assert not np.array_equal(np.asarray(a), np.asarray(b))
