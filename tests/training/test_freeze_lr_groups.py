"""optim.freeze and optim.lr_groups: frozen parameters stay bit-identical and hold no
optimizer state; a group's learning rate scales its update; bad settings are clear errors."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fjft.config import experiment as config_lib
from fjft.config import identity
from fjft.training import optim
from fjft.errors import ConfigError
from fjft.training.step import TrainState, init_opt_state, make_train_step
from fjft.tasks.classify import model as classify


def _cfg(**kw):
  c = dict(lr=1e-2, schedule="constant", warmup_fraction=0.0, weight_decay=0.01, clip_norm=0.0,
           b1=0.9, b2=0.999, eps=1e-8, freeze="", lr_groups="")
  c.update(kw)
  return ml_collections.ConfigDict(c)


def _params():
  rng = np.random.default_rng(0)
  return {"encoder": {"w1": jnp.asarray(rng.normal(size=(5, 7)), jnp.float32),
                      "b1": jnp.zeros((7,), jnp.float32)},
          "classifier": {"kernel": jnp.asarray(rng.normal(size=(7, 3)), jnp.float32)}}


def _apply(params, batch, key):
  del key
  h = jnp.tanh(batch["x"] @ params["encoder"]["w1"] + params["encoder"]["b1"])
  return h @ params["classifier"]["kernel"]


def _batch(seed):
  rng = np.random.default_rng(seed)
  return {"x": rng.normal(size=(8, 5)).astype(np.float32),
          "labels": rng.integers(0, 3, 8).astype(np.int32), "weights": np.ones(8, np.float32)}


def _train(cfg, steps=3):
  params = _params()
  trainable = optim.trainable_mask(params, cfg.freeze)
  tx = optim.make_optimizer(cfg, 10, optim.split_trainable(params, trainable)[0])
  step = jax.jit(make_train_step(_apply, classify.loss_fn, tx, 1, jax.random.key(0), trainable),
                 donate_argnums=0)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=init_opt_state(tx, params, trainable))
  for i in range(steps):
    state, _ = step(state, _batch(i))
  return state


def test_paths_name_parameters():
  assert sorted(jax.tree.leaves(optim.param_paths(_params()))) == [
      "classifier.kernel", "encoder.b1", "encoder.w1"]


def test_frozen_parameters_stay_bit_identical_and_hold_no_state():
  start = _params()
  state = _train(_cfg(freeze=r"^encoder\."))
  for k in ("w1", "b1"):
    assert np.array_equal(np.asarray(state.params["encoder"][k]), np.asarray(start["encoder"][k]))
  assert not np.array_equal(np.asarray(state.params["classifier"]["kernel"]),
                            np.asarray(start["classifier"]["kernel"]))
  # Adam moments exist for the head only: 2 x 21 numbers, not 2 x (35 + 7 + 21)
  moments = sum(x.size for x in jax.tree.leaves(state.opt_state) if x.ndim > 0)
  assert moments == 2 * 21


def test_freezing_nothing_matches_the_plain_optimizer():
  plain = _params()
  tx = optim.make_optimizer(_cfg(), 10)
  step = jax.jit(make_train_step(_apply, classify.loss_fn, tx, 1, jax.random.key(0)))
  s = TrainState(step=jnp.zeros((), jnp.int32), params=plain, opt_state=tx.init(plain))
  for i in range(3):
    s, _ = step(s, _batch(i))
  grouped = _train(_cfg(freeze=r"^nothing$", lr_groups=r"^encoder\.=1"))
  for a, b in zip(jax.tree.leaves(s.params), jax.tree.leaves(grouped.params)):
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_lr_group_scales_its_update():
  start = _params()
  base = _train(_cfg(), steps=1)
  fast = _train(_cfg(lr_groups=r"^classifier\.=10"), steps=1)
  delta = lambda s, *k: np.asarray(s.params[k[0]][k[1]]) - np.asarray(start[k[0]][k[1]])
  # Adam's first step and the decoupled weight decay are both proportional to the lr
  np.testing.assert_allclose(delta(fast, "classifier", "kernel"),
                             10 * delta(base, "classifier", "kernel"), rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(delta(fast, "encoder", "w1"), delta(base, "encoder", "w1"),
                             rtol=1e-6)


@pytest.mark.parametrize("kw, message", [
    (dict(lr_groups="^head=10"), "matches no parameter"),
    (dict(lr_groups="^encoder=fast"), "is not <regex>=<factor>"),
    (dict(lr_groups="^encoder=0"), "is not <regex>=<factor>"),
])
def test_bad_settings_are_clear_errors(kw, message):
  with pytest.raises(ConfigError, match=message):
    optim.make_optimizer(_cfg(**kw), 10, _params())


@pytest.mark.parametrize("freeze, message", [
    ("(", "optim.freeze: '\\(' is not a regular expression"),
    (".", "freezes every parameter"),
])
def test_bad_freeze_is_a_clear_error(freeze, message):
  with pytest.raises(ConfigError, match=message):
    optim.trainable_mask(_params(), freeze)


def test_new_fields_change_the_run_hash_only_when_set():
  from fjft.tasks.classify.config import default_config as classify_config
  c = classify_config()
  c.data.path = "x"
  d = config_lib.to_dict(c)
  for key in ("freeze", "lr_groups"):
    del d["optim"][key]
  assert identity.config_hash(c) == identity.config_hash(d)   # runs made before them
  c.optim.freeze = "^encoder\\.embeddings\\."
  assert identity.config_hash(c) != identity.config_hash(d)


@pytest.mark.slow
def test_a_run_with_frozen_embeddings_and_a_fast_head(tiny_bert_dir, tmp_path):
  import os
  from fjft.run import opened
  from fjft.run import runner
  from fjft.models import bert
  from tests.conftest import REPO
  overrides = [("model.name", tiny_bert_dir),
               ("data.path", os.path.join(REPO, "experiments/data/quickstart")),
               ("train.steps", "4"), ("train.batch_size", "8"), ("train.eval_every", "2"),
               ("train.checkpoint_every", "2"), ("train.progress", "false"),
               ("optim.freeze", r"^encoder\.embeddings\."),
               ("optim.lr_groups", r"^classifier\.=10"), ("optim.lr", "1e-3")]
  config = config_lib.load_config(os.path.join(REPO, "experiments", "quickstart.py"), overrides)
  results = runner.run(config, str(tmp_path), say=lambda s: None)
  _, pretrained = bert.from_hf(tiny_bert_dir)
  n_embed = sum(x.size for x in jax.tree.leaves(pretrained.embeddings))
  assert results["params"]["total"] - results["params"]["trainable"] == n_embed
  run = opened.open_run(os.path.join(str(tmp_path), identity.run_name(config)))
  from flax import nnx
  before = jax.tree.leaves(nnx.state(pretrained.embeddings))
  after = jax.tree.leaves(run.params["encoder"]["embeddings"])
  for a, b in zip(before, after):
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_optimizer_state_leaves_follow_their_params_through_lr_groups():
  """optim.like_params finds each AdamW moment's param under multi_transform's nesting
  (run_setup lays the optimizer state out like the params with it)."""
  import jax
  import jax.numpy as jnp
  from fjft.training import optim
  from fjft.tasks.classify.config import default_config as classify_config
  params = {"body": {"kernel": jnp.zeros((4, 3))}, "head": {"kernel": jnp.zeros((3, 2))}}
  cfg = classify_config().optim
  cfg.lr_groups = r"^head\.=10"
  optimizer = optim.make_optimizer(cfg, 10, params)
  state = jax.eval_shape(optimizer.init, params)
  tagged = optim.like_params(state, params, {"body": {"kernel": "B"}, "head": {"kernel": "H"}},
                             lambda _: "-")
  leaves = jax.tree.leaves(tagged)
  assert leaves.count("B") == 2 and leaves.count("H") == 2, leaves   # mu and nu of each
  assert set(leaves) == {"B", "H", "-"}
