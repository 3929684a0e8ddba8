"""Runs in a subprocess with 8 simulated CPU devices (tests/test_scale_out.py); the rest of
the suite keeps one device.

    python tests/parallel/scale_out_worker.py <tiny bert dir> <tiny llama dir> <workdir> <out.json>

For an encoder classifier and a decoder LM (each built as its runner builds it, with
dropout on), 5 train steps on one device and under data 8, fsdp 8 and data 2 x fsdp 2 x
tensor 2, on the same batches: the loss of each step, per mesh. Then the fsdp-8 state,
checkpointed, is resumed under 2 x 2 x 2 and under one device (resharded by Orbax): are
the params and optimizer state the saved ones, laid out as the new mesh says?
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
from flax import nnx

from fjft.models import adapters
from fjft.config import experiment as config_lib
from fjft.tasks.lm import task as lm_runner
from fjft.tasks.classify import task as classify_task
from fjft.parallel import mesh as mesh_lib
from fjft.tasks.lm.config import default_config as lm_config
from fjft.models.pretrained import load_lm
from fjft.models import encoders
from fjft.errors import ConfigError
from fjft.run.start import check_batch_sizes
from fjft.training.state import place_params, prepare_training
from fjft.tasks.classify import model as classify

MESHES = {"one": (1, 1, 1), "data8": (8, 1, 1), "fsdp8": (1, 8, 1), "mixed": (2, 2, 2)}
STEPS, ROWS, LENGTH = 5, 8, 16


def encoder(model_dir: str):
  config = config_lib.load_config("experiments/quickstart.py", [("model.name", model_dir)])
  model = classify_task.build_model(config, encoders.load(config), num_labels=6)
  graphdef, params = nnx.split(model)
  rng = np.random.default_rng(0)
  batches = []
  for _ in range(STEPS):
    lengths = rng.integers(4, LENGTH + 1, ROWS)
    mask = (np.arange(LENGTH)[None] < lengths[:, None]).astype(np.int32)
    batches.append({"input_ids": rng.integers(1000, 30000, (ROWS, LENGTH)).astype(np.int32) * mask,
                    "attention_mask": mask,
                    "labels": rng.integers(0, 6, ROWS).astype(np.int32),
                    "weights": np.ones(ROWS, np.float32)})
  return (config, graphdef, params, encoders.make_apply_fn(graphdef, "float32"), classify.loss_fn,
          adapters.trainable_regex(config, new=classify.HEAD_PATTERN), batches)


def decoder(model_dir: str):
  config = lm_config()
  config.model.name = model_dir
  lm = load_lm(model_dir, scan_layers=True)
  rng = np.random.default_rng(1)
  batches = [{"input_ids": rng.integers(10, 40000, (ROWS, LENGTH)).astype(np.int32),
              "loss_mask": np.ones((ROWS, LENGTH), bool),
              "segment_ids": np.ones((ROWS, LENGTH), np.int32),
              "positions": np.tile(np.arange(LENGTH, dtype=np.int32), (ROWS, 1))}
             for _ in range(STEPS)]
  graphdef, params = nnx.split(lm_runner.build_model(config, lm))
  return (config, graphdef, params, lm_runner.make_apply_fn(graphdef, "float32"),
          lm_runner.loss_fn, adapters.trainable_regex(config), batches)


def train(setup, mesh_sizes, run_dir: str):
  """(the losses of STEPS steps under the mesh, the final state)."""
  config, _, params, apply_fn, loss_fn, only, batches = setup
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = mesh_sizes
  # a step size that moves the loss within 5 steps, from the first
  config.optim.lr, config.optim.warmup_fraction = 1e-3, 0.0
  mesh = mesh_lib.make_mesh(config.mesh)
  rules = config.sharding_rules
  params = place_params(jax.tree.map(np.asarray, params), mesh, rules, say=lambda *_: None)
  training = prepare_training(config, params, run_dir, apply_fn, loss_fn, lambda *_: None, mesh,
                              only=only)
  state, losses = training.state, []
  for batch in batches[int(state.step):]:
    state, metrics = training.train_step(state, mesh_lib.global_batch(batch, mesh, rules))
    losses.append(float(metrics["loss"]))
  return losses, state, training


def main(bert_dir: str, llama_dir: str, workdir: str, out_path: str) -> None:
  assert jax.device_count() == 8, jax.devices()
  out = {}
  for name, setup in (("encoder", encoder(bert_dir)), ("decoder", decoder(llama_dir))):
    out[name] = {"param_bytes": {}, "opt_bytes": {}}
    for mesh_name, sizes in MESHES.items():
      losses, state, training = train(setup, sizes, f"{workdir}/{name}-{mesh_name}")
      out[name][mesh_name] = losses
      out[name]["param_bytes"][mesh_name] = mesh_lib.bytes_per_device(state.params)
      out[name]["opt_bytes"][mesh_name] = mesh_lib.bytes_per_device(state.opt_state)
      if mesh_name == "fsdp8":
        training.checkpoints.save(int(state.step), state, {})
        training.checkpoints.close()
        saved = jax.device_get(state)
        saved_dir = f"{workdir}/{name}-{mesh_name}"
    out[name]["restored"] = {}
    for mesh_name in ("mixed", "one"):
      # the fsdp-8 run dir has a checkpoint at the last step: nothing is left to train
      _, state, _ = train(setup, MESHES[mesh_name], saved_dir)
      same = jax.tree.all(jax.tree.map(np.array_equal, saved, jax.device_get(state)))
      kernel = [x for x in jax.tree.leaves(state.params) if x.ndim >= 2][0]
      out[name]["restored"][mesh_name] = {
          "equal": bool(same), "step": int(state.step),
          "devices": len(kernel.sharding.device_set),
          "mesh": dict(kernel.sharding.mesh.shape) if hasattr(kernel.sharding, "mesh") else None}
  # a batch the mesh cannot split evenly is a config error, before anything runs
  config = setup[0]
  config.train.batch_size = 12
  try:
    check_batch_sizes(config, mesh_lib.make_mesh(config.mesh))   # the last mesh: one device
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = MESHES["data8"]
    check_batch_sizes(config, mesh_lib.make_mesh(config.mesh))
  except ConfigError as e:
    out["batch_error"] = str(e)
  with open(out_path, "w") as f:
    json.dump(out, f)


if __name__ == "__main__":
  main(*sys.argv[1:])
