"""What every runner (classify, lm, retrieval) does the same way before its loop: open the
run directory, make the mesh, and build or resume the train state with its optimizer."""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from fjft.config import experiment as config_lib
from fjft.parallel import mesh as mesh_lib
from fjft.parallel import distributed
from fjft.training import optim
from fjft.run import rundir
from fjft.training.checkpoint import RunCheckpoints, abstract_like
from fjft.errors import ConfigError
from fjft.training.loop import LoopState
from fjft.training.step import TrainState, init_opt_state, make_train_step


def open_run(config, workdir: str, rerun: bool, say) -> tuple[str, dict | None, Any]:
  """(run dir, its results if it already finished, mesh); the mesh is None when finished."""
  check_attention_impl(config.model.attention_impl, config.model.compute_dtype)
  run_dir, finished = start_run(config, workdir, rerun, say)
  if finished is not None:
    return run_dir, finished, None
  mesh = mesh_lib.make_mesh(config.mesh)
  check_batch_sizes(config, mesh)
  say(f"run {run_dir}\nmesh {mesh_lib.describe(mesh)}")
  return run_dir, None, mesh


def check_batch_sizes(config, mesh) -> None:
  """Every batch is split over the mesh axes of the `batch` sharding rule: its rows must
  divide by their size."""
  ways = mesh_lib.batch_shards(mesh, config.sharding_rules)
  for field in ("train.batch_size", "train.eval_batch_size"):
    size = config_lib.get_field(config, field)
    if size % ways:
      raise ConfigError(f"config field {field}={size} does not divide into the {ways} batch "
                        f"shards of the mesh ({mesh_lib.describe(mesh)}, sharding_rules.batch="
                        f"{config.sharding_rules.batch!r})")


def start_run(config, workdir: str, rerun: bool, say) -> tuple[str, dict | None]:
  """(run dir, its results if it already finished): a finished run is reported, not
  retrained, unless `rerun`; otherwise the dir is made (or kept, to resume)."""
  run_dir = rundir.run_dir_for(config, workdir)
  if rundir.is_finished(run_dir) and not rerun:
    say(f"run {run_dir} already finished (results.json); pass --rerun to train it again")
    return run_dir, rundir.read_json(rundir.results_path(run_dir))
  if rerun and os.path.isdir(run_dir) and distributed.is_main():
    shutil.rmtree(run_dir)
  run_dir = rundir.prepare(config, workdir)
  distributed.barrier("run directory ready")  # the other hosts write into it next
  return run_dir, None


def check_attention_impl(impl: str, compute_dtype: str) -> None:
  """cuDNN's fused attention exists on GPUs only, and only for 16-bit inputs."""
  if impl != "cudnn":
    return
  if jax.default_backend() != "gpu":
    raise ConfigError(f"model.attention_impl='cudnn' needs a GPU, and this run's devices are"
                      f" {jax.default_backend()!r}: set model.attention_impl='' (XLA attention)")
  if jnp.dtype(compute_dtype).itemsize != 2:
    raise ConfigError(f"model.attention_impl='cudnn' needs a 16-bit model.compute_dtype"
                      f" (bfloat16 or float16), not {compute_dtype!r}")


@dataclasses.dataclass
class Training:
  state: TrainState              # fresh, or restored from the run's last checkpoint
  train_step: Callable           # jitted, state donated
  loop_state: LoopState
  checkpoints: RunCheckpoints
  lr_at: optax.Schedule
  params: dict                   # {"trainable": n, "total": n}: counts for results.json


def place_params(params, mesh, rules, say):
  """`params` (an nnx.State) laid out on the mesh by their logical axes (config.sharding_rules)."""
  shardings, uneven = mesh_lib.param_shardings(params, mesh, rules)
  if uneven:
    say(f"{len(uneven)} params are not split over every mesh axis their sharding rule names, "
        f"because the axis size does not divide their dimension (e.g. {uneven[0]})")
  return jax.device_put(params, shardings)


def prepare_training(config, params, run_dir: str, apply_fn: Callable, loss_fn: Callable,
                     say, mesh, *, only: str = "") -> Training:
  """The optimizer over the trainable params (optim.freeze; with `only`, just the params it
  matches, e.g. LoRA adapters and a new head), the train state, resumed from the run's last
  checkpoint when there is one, and the jitted train step.

  `params` are placed on `mesh` (place_params); the optimizer state is laid out like the
  params it tracks (split over fsdp with them), and the step keeps every layout in place.
  """
  trainable = optim.trainable_mask(params, config.optim.get("freeze", ""), only)
  trained = optim.split_trainable(params, trainable)[0]
  optimizer = optim.make_optimizer(config.optim, config.train.steps, trained)
  everywhere = mesh_lib.replicated(mesh)
  opt_shardings = optim.like_params(jax.eval_shape(optimizer.init, trained), trained,
                                    jax.tree.map(lambda x: x.sharding, trained),
                                    lambda _: everywhere)
  state = TrainState(step=jax.device_put(jnp.zeros((), jnp.int32), everywhere), params=params,
                     opt_state=init_opt_state(optimizer, params, trainable, opt_shardings))
  state_shardings = jax.tree.map(lambda x: x.sharding, state)
  size = mesh_lib.format_bytes
  say(f"per device: params {size(mesh_lib.bytes_per_device(state.params))}, optimizer state "
      f"{size(mesh_lib.bytes_per_device(state.opt_state))} (of {size(_bytes(state.params))} "
      f"and {size(_bytes(state.opt_state))} in all)")
  checkpoints = RunCheckpoints(run_dir, config.train.keep_checkpoints)
  loop_state = LoopState()
  latest = checkpoints.latest_step()
  if latest is not None:
    state, meta = checkpoints.restore(latest, abstract_like(state))
    loop_state = LoopState.from_meta(meta)
    say(f"resuming from the checkpoint at step {latest}")
  train_step = jax.jit(
      make_train_step(apply_fn, loss_fn, optimizer, config.train.grad_accum,
                      jax.random.key(config.seed), trainable),
      out_shardings=(state_shardings, everywhere), donate_argnums=0)
  counts = {"trainable": optim.count(params, trainable), "total": optim.count(params)}
  return Training(state, train_step, loop_state, checkpoints,
                  optim.schedule(config.optim, config.train.steps), counts)


def _bytes(tree) -> int:
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))
