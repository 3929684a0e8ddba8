"""Orbax checkpoints of a run: the last N train states and the best params.

Layout: <run>/checkpoints/last/<step>/ (params, optimizer state, step and the loop's
meta: data iterator position, early-stopping state) and <run>/checkpoints/best/<step>/
(params only). Saves are synchronous: a kill -9 during a save leaves Orbax's temporary
folder, which restore ignores, so the previous checkpoint is used.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from fjft.errors import CheckpointError


def _manager(directory: str, keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False))


class RunCheckpoints:

  def __init__(self, run_dir: str, keep: int):
    self.last_dir = os.path.join(run_dir, "checkpoints", "last")
    self.best_dir = os.path.join(run_dir, "checkpoints", "best")
    self.last = _manager(self.last_dir, keep)
    self.best = _manager(self.best_dir, 1)

  def latest_step(self) -> int | None:
    return self.last.latest_step()

  def save(self, step: int, state, meta: dict) -> None:
    if step in self.last.all_steps():
      return
    self.last.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

  def restore(self, step: int, abstract_state):
    try:
      out = self.last.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    except Exception as e:  # Orbax raises many types; the user needs the path and cause.
      raise CheckpointError(
          f"cannot restore checkpoint {self.last_dir}/{step}: {type(e).__name__}: {e}") from None
    return out.state, out.meta

  def save_best(self, step: int, params) -> None:
    if step in self.best.all_steps():
      return
    self.best.save(step, args=ocp.args.StandardSave(params), force=True)

  def best_step(self) -> int | None:
    return self.best.latest_step()

  def close(self) -> None:
    self.last.close()
    self.best.close()


def restore_best_params(run_dir: str, abstract_params):
  """The best params of a run directory, restored into `abstract_params`' shardings."""
  best_dir = os.path.join(run_dir, "checkpoints", "best")
  if not os.path.isdir(best_dir):
    raise CheckpointError(f"{best_dir}: no best checkpoint (has the run evaluated on dev yet?)")
  mngr = _manager(best_dir, 1)
  step = mngr.latest_step()
  if step is None:
    raise CheckpointError(f"{best_dir}: no complete checkpoint found")
  try:
    params = mngr.restore(step, args=ocp.args.StandardRestore(abstract_params))
  except Exception as e:  # see RunCheckpoints.restore
    raise CheckpointError(f"cannot restore {best_dir}/{step}: {type(e).__name__}: {e}") from None
  finally:
    mngr.close()
  return step, params


def abstract_like(tree):
  """ShapeDtypeStructs with the shardings of `tree`, for Orbax restore targets.

  Orbax lays each array out as its target says, whatever mesh the checkpoint was saved
  from: that is how a run saved on 8 devices resumes on 2 x 2 x 2 or loads on one. A leaf
  without a sharding (an abstract tree from eval_shape) goes to this process's first device.
  """
  one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None) or one),
      tree)
