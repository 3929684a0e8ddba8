"""The train state of a run: params placed on the mesh, the optimizer over the trainable
params, resumed from the last checkpoint when there is one, and the jitted train step."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from fjft.parallel import mesh as mesh_lib
from fjft.training import optim
from fjft.errors import CheckpointError
from fjft.training.checkpoint import RunCheckpoints, abstract_like
from fjft.training.loop import LoopState
from fjft.training.step import TrainState, init_opt_state, make_train_step


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
                     say, mesh, *, only: str = "", checkpoints: RunCheckpoints | None = None
                     ) -> Training:
  """The optimizer over the trainable params (optim.freeze; with `only`, just the params it
  matches, e.g. LoRA adapters and a new head), the train state, resumed from the run's last
  checkpoint when there is one, and the jitted train step.

  `params` are placed on `mesh` (place_params); the optimizer state is laid out like the
  params it tracks (split over fsdp with them), and the step keeps every layout in place.
  A resumed state is restored straight into that layout: no fresh state is built beside it,
  and `params` may then be abstract (fjft.training.checkpoint.abstract_like), so that no
  second copy of the params is held while the checkpoint is read.
  """
  trainable = optim.trainable_mask(params, config.optim.get("freeze", ""), only)
  trained = optim.split_trainable(params, trainable)[0]
  optimizer = optim.make_optimizer(config.optim, config.train.steps, trained)
  everywhere = mesh_lib.replicated(mesh)
  opt_shardings = optim.like_params(jax.eval_shape(optimizer.init, trained), trained,
                                    jax.tree.map(lambda x: x.sharding, trained),
                                    lambda _: everywhere)
  abstract = TrainState(
      step=jax.ShapeDtypeStruct((), jnp.int32, sharding=everywhere),
      params=abstract_like(params),
      opt_state=jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                             jax.eval_shape(optimizer.init, trained), opt_shardings))
  state_shardings = jax.tree.map(lambda x: x.sharding, abstract)
  size = mesh_lib.format_bytes
  say(f"per device: params {size(mesh_lib.bytes_per_device(abstract.params))}, optimizer "
      f"state {size(mesh_lib.bytes_per_device(abstract.opt_state))} (of "
      f"{size(_bytes(abstract.params))} and {size(_bytes(abstract.opt_state))} in all)")
  if checkpoints is None:
    checkpoints = RunCheckpoints(run_dir, config.train.keep_checkpoints)
  loop_state = LoopState()
  counts = {"trainable": optim.count(params, trainable), "total": optim.count(params)}
  try:
    latest, state, meta = checkpoints.restore_latest(abstract, say)
  except CheckpointError as e:
    raise CheckpointError(f"{e}\n(the unreadable checkpoints are kept in "
                          f"{checkpoints.unreadable_dir}); pass --rerun to train from the "
                          "start") from None
  if latest is None:
    if any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(params)):
      raise CheckpointError(f"{run_dir}: its last checkpoint is gone, and there are no "
                            "params to start from; run the command again")
    state = TrainState(step=jax.device_put(jnp.zeros((), jnp.int32), everywhere), params=params,
                       opt_state=init_opt_state(optimizer, params, trainable, opt_shardings))
  else:
    loop_state = LoopState.from_meta(meta)
    say(f"resuming from the checkpoint at step {latest}")
  train_step = jax.jit(
      make_train_step(apply_fn, loss_fn, optimizer, config.train.grad_accum,
                      jax.random.key(config.seed), trainable),
      out_shardings=(state_shardings, everywhere), donate_argnums=0)
  return Training(state, train_step, loop_state, checkpoints,
                  optim.schedule(config.optim, config.train.steps), counts)


def _bytes(tree) -> int:
  return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree))
