"""The train step: gradient accumulation equals one large batch; no recompiles per step."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fjft.training import optim
from fjft.training.step import TrainState, make_train_step
from fjft.tasks.classify import model as classify


def _setup(grad_accum):
  cfg = ml_collections.ConfigDict(dict(lr=1e-2, schedule="constant", warmup_fraction=0.0,
                                       weight_decay=0.01, clip_norm=1.0, b1=0.9, b2=0.999, eps=1e-8))
  tx = optim.make_optimizer(cfg, 10)

  def apply_fn(params, batch, key):
    del key
    h = jnp.tanh(batch["x"] @ params["w1"])
    return h @ params["w2"]

  step = jax.jit(make_train_step(apply_fn, classify.loss_fn, tx, grad_accum, jax.random.key(0)))
  rng = np.random.default_rng(0)
  params = {"w1": jnp.asarray(rng.normal(size=(5, 7)), jnp.float32),
            "w2": jnp.asarray(rng.normal(size=(7, 3)), jnp.float32)}
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
  return step, state


def _batch(seed):
  rng = np.random.default_rng(seed)
  w = np.ones(8, np.float32)
  w[-3:] = 0  # a padded final batch: zero-weight rows must not count
  return {"x": rng.normal(size=(8, 5)).astype(np.float32),
          "labels": rng.integers(0, 3, 8).astype(np.int32), "weights": w}


def test_grad_accumulation_equals_large_batch():
  step1, s1 = _setup(1)
  step4, s4 = _setup(4)
  for i in range(3):
    s1, m1 = step1(s1, _batch(i))
    s4, m4 = step4(s4, _batch(i))
    np.testing.assert_allclose(m1["loss"], m4["loss"], rtol=1e-6)
  for k in ("w1", "w2"):
    np.testing.assert_allclose(s1.params[k], s4.params[k], rtol=1e-5, atol=1e-6)


def test_padding_rows_do_not_change_the_update():
  step, s = _setup(1)
  b = _batch(0)
  b2 = dict(b, x=b["x"].copy(), labels=b["labels"].copy())
  b2["x"][-3:] = 100.0   # garbage in zero-weight rows
  b2["labels"][-3:] = 2
  a, _ = step(s, b)
  _, s_again = _setup(1)
  c, _ = step(s_again, b2)
  np.testing.assert_allclose(a.params["w1"], c.params["w1"], rtol=1e-6)
