"""optim.state_dtype=bfloat16: AdamW's moments stored in bfloat16, stochastically rounded,
each param's update one fused pass (fjft.training.low_precision)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from fjft.config.defaults import add_optim
from fjft.errors import ConfigError
from fjft.training import low_precision, optim


def _optim(**fields):
  c = ml_collections.ConfigDict()
  add_optim(c, lr=1e-2, schedule="constant", warmup_fraction=0.0, weight_decay=0.1, b2=0.999)
  c.optim.update(fields)
  return c.optim


def test_stochastic_rounding_is_unbiased_and_lands_on_neighbours():
  x = jnp.full((200_000,), 1.0 + 2.0 ** -10, jnp.float32)   # between two bf16 values
  for bits in (jax.random.bits(jax.random.key(0), x.shape, jnp.uint32),
               low_precision._hash_bits(x.shape, jnp.int32(7), 3)):
    r = low_precision.stochastic_round(x, bits).astype(jnp.float32)
    assert set(np.unique(np.asarray(r))) == {1.0, 1.0 + 2.0 ** -7}
    assert abs(float(jnp.mean(r)) - float(x[0])) < 2e-5
  exact = jnp.asarray([0.0, -2.5, 3.0, jnp.inf, -jnp.inf], jnp.float32)
  np.testing.assert_array_equal(low_precision.stochastic_round(
      exact, low_precision._hash_bits(exact.shape, jnp.int32(1), 0)).astype(jnp.float32), exact)


def test_the_first_update_is_optax_adamws_with_clipping():
  params = {"w": jnp.linspace(-1, 1, 512).reshape(16, 32), "b": jnp.ones((32,))}
  grads = jax.tree.map(lambda p: 3.0 * jnp.cos(p), params)   # norm above clip_norm=1
  ours = optim.make_optimizer(_optim(state_dtype="bfloat16"), 100)
  theirs = optim.make_optimizer(_optim(), 100)
  u1, _ = ours.update(grads, ours.init(params), params)
  u2, _ = theirs.update(grads, theirs.init(params), params)
  for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
  new, state = ours.apply(grads, ours.init(params), params, grad_scale=0.5)
  u3, _ = ours.update(jax.tree.map(lambda g: 0.5 * g, grads), ours.init(params), params)
  for p, n, u in zip(jax.tree.leaves(params), jax.tree.leaves(new), jax.tree.leaves(u3)):
    np.testing.assert_allclose(n, p + u, rtol=1e-6)
  assert {x.dtype for x in jax.tree.leaves((state.mu, state.nu))} == {jnp.dtype(jnp.bfloat16)}


def test_the_second_moment_keeps_moving_where_round_to_nearest_freezes_it():
  # nu climbs from 0 towards g^2 = 4 by 0.1% of the gap a step: once a step's change is
  # below bf16's resolution, nearest rounding stops (at 1.0, for good); stochastic rounding
  # tracks float32's 2.01 after 700 steps
  params = {"w": jnp.ones((4096,), jnp.float32)}
  grads = {"w": jnp.full((4096,), 2.0, jnp.float32)}
  tx = optim.make_optimizer(_optim(state_dtype="bfloat16", clip_norm=0.0), 1000)
  state = tx.init(params)
  step = jax.jit(lambda s: tx.update(grads, s, params)[1])
  for _ in range(700):
    state = step(state)
  nu = np.asarray(state.nu["w"], np.float32)
  want = 4 * (1 - 0.999 ** 700)
  assert abs(nu.mean() - want) / want < 0.01


def test_optim_state_dtype_halves_the_moments_and_trains_like_float32():
  target = jnp.linspace(-1, 1, 256)
  params = {"w": jnp.zeros((256,), jnp.float32)}
  loss = lambda p: jnp.mean((p["w"] - target) ** 2)
  finals = {}
  for dtype in ("float32", "bfloat16"):
    tx = optim.make_optimizer(_optim(state_dtype=dtype, weight_decay=0.0), 300)
    p, s = params, tx.init(params)
    nbytes = sum(x.nbytes for x in jax.tree.leaves(s) if getattr(x, "ndim", 0) > 0)
    assert nbytes == {"float32": 2 * 4 * 256, "bfloat16": 2 * 2 * 256}[dtype]

    @jax.jit
    def step(p, s):
      updates, s = tx.update(jax.grad(loss)(p), s, p)
      return optax.apply_updates(p, updates), s
    for _ in range(300):
      p, s = step(p, s)
    finals[dtype] = float(loss(p))
  assert finals["bfloat16"] < 1e-3 and finals["float32"] < 1e-3
  with pytest.raises(ConfigError, match="optim.state_dtype must be float32 or bfloat16"):
    optim.make_optimizer(_optim(state_dtype="float16"), 10)
