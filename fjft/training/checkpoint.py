"""Orbax checkpoints of a run: the last N train states and the best params.

Layout: <run>/checkpoints/last/<step>/ (params, optimizer state, step and the loop's
meta: data iterator position, early-stopping state) and <run>/checkpoints/best/<step>/
(params only, the newest two bests). Saves are synchronous: a kill -9 during a save leaves
Orbax's temporary folder, which restore ignores, so the previous checkpoint is used.

A checkpoint that is there but does not restore (files cut short by a full disk or a copy,
or corrupted) is not the end of the run: restore falls back to the newest one that does,
saying which was unreadable and why; only when none restores does it stop, naming each.
In training, an unreadable checkpoint is moved to <run>/checkpoints/unreadable/ (kept for
inspection, and out of the way of the save that replaces it).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from typing import Callable

import jax
import orbax.checkpoint as ocp

from fjft.errors import CheckpointError

# Bests kept: the newest is the run's model; the one before is what remains when the newest
# is unreadable.
KEEP_BEST = 2


def _manager(directory: str, keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False))


def _why(e: Exception) -> str:
  """The error on one line; a long one keeps its start (what) and its end (the OS's why).
  A full disk is said first in words: TensorStore reports it only as os_error_code 28,
  deep in a long message whose middle is cut here."""
  text = " ".join(f"{type(e).__name__}: {e}".split())
  if "No space left" not in text and re.search(r"os_error_code='?28\b|\[Errno 28\]", text):
    text = f"No space left on device: {text}"
  return text if len(text) <= 400 else f"{text[:200]} ... {text[-190:]}"


def restore_newest(manager: ocp.CheckpointManager, restore: Callable[[int], object], what: str,
                   say=print, set_aside: str | None = None):
  """(step, restored) of the newest of `manager`'s checkpoints that restores; the
  unreadable ones newer than it are said (and, with `set_aside`, moved into that folder).
  CheckpointError naming each when none restores; (None, None) when there are none."""
  steps = sorted(manager.all_steps(), reverse=True)
  failed = []
  for step in steps:
    try:
      out = restore(step)
    except Exception as e:  # Orbax raises many types; the user needs the path and cause.
      path = os.path.join(os.fspath(manager.directory), str(step))
      failed.append(f"{path}: {_why(e)}")
      moved = _set_aside(path, set_aside) if set_aside else None
      later = "the one before" if step != steps[-1] else "no other"
      say(f"{what} {path} is unreadable ({_why(e)})" + (f"; moved to {moved}" if moved else "")
          + f"; trying {later}")
      continue
    if set_aside and failed:
      manager.reload()   # forget the steps moved aside
    return step, out
  if set_aside and failed:
    manager.reload()
  if failed:
    raise CheckpointError(f"no {what} of {os.fspath(manager.directory)} restores:\n  "
                          + "\n  ".join(failed))
  return None, None


def _set_aside(path: str, folder: str) -> str | None:
  """Moves an unreadable checkpoint into `folder` (process 0; the others only read)."""
  if jax.process_index() != 0:
    return None
  os.makedirs(folder, exist_ok=True)
  parent = os.path.basename(os.path.dirname(path))
  dest = os.path.join(folder, f"{parent}-{os.path.basename(path)}-{time.strftime('%Y%m%dT%H%M%S')}")
  os.rename(path, dest)
  return dest


def _saving(manager: ocp.CheckpointManager, step: int, what: str, save: Callable[[], object]):
  """Runs an Orbax save; a failure (a full disk, a quota, a folder gone) is a
  CheckpointError naming the checkpoint, and its partly written temporary folder is
  removed so that it frees the space it took. The previous checkpoints are untouched."""
  try:
    save()
  except Exception as e:  # Orbax and TensorStore raise many types; the user needs path and cause
    directory = os.fspath(manager.directory)
    if jax.process_index() == 0:
      for name in os.listdir(directory):
        if name.startswith(f"{step}.") and "tmp" in name:
          shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    raise CheckpointError(f"cannot write {what} {directory}/{step}: {_why(e)}. Once that is "
                          "fixed, the same command resumes the run from its newest complete "
                          "checkpoint") from None


class RunCheckpoints:

  def __init__(self, run_dir: str, keep: int):
    self.last_dir = os.path.join(run_dir, "checkpoints", "last")
    self.best_dir = os.path.join(run_dir, "checkpoints", "best")
    self.unreadable_dir = os.path.join(run_dir, "checkpoints", "unreadable")
    self.last = _manager(self.last_dir, keep)
    self.best = _manager(self.best_dir, KEEP_BEST)

  def latest_step(self) -> int | None:
    return self.last.latest_step()

  def save(self, step: int, state, meta: dict) -> None:
    if step in self.last.all_steps():
      return
    _saving(self.last, step, "checkpoint", lambda: self.last.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))))

  def restore_latest(self, abstract_state, say=print):
    """(step, state, meta) of the newest last checkpoint that restores (None, None, None
    when there is none); unreadable newer ones are moved aside and said."""
    step, out = restore_newest(
        self.last, lambda s: self.last.restore(s, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())),
        "checkpoint", say, set_aside=self.unreadable_dir)
    return (None, None, None) if step is None else (step, out.state, out.meta)

  def save_best(self, step: int, params) -> None:
    if step in self.best.all_steps():
      return
    _saving(self.best, step, "best checkpoint",
            lambda: self.best.save(step, args=ocp.args.StandardSave(params), force=True))

  def restore_best(self, abstract_params, say=print):
    """(step, params) of the newest best checkpoint that restores (see restore_newest)."""
    step, params = restore_newest(
        self.best, lambda s: self.best.restore(s, args=ocp.args.StandardRestore(abstract_params)),
        "best checkpoint", say, set_aside=self.unreadable_dir)
    if step is None:
      raise CheckpointError(f"{self.best_dir}: no best checkpoint (has the run evaluated on "
                            "dev yet?)")
    return step, params

  def best_step(self) -> int | None:
    return self.best.latest_step()

  def close(self) -> None:
    self.last.close()
    self.best.close()


def _to_stderr(line: str) -> None:
  print(line, file=sys.stderr)


def restore_best_params(run_dir: str, abstract_params, say=_to_stderr):
  """The best params of a finished run directory, restored into `abstract_params'`
  shardings: the newest best checkpoint that restores (an unreadable one is said, and left
  where it is: opening a run to use it changes nothing in it)."""
  best_dir = os.path.join(run_dir, "checkpoints", "best")
  if not os.path.isdir(best_dir):
    raise CheckpointError(f"{best_dir}: no best checkpoint (has the run evaluated on dev yet?)")
  mngr = _manager(best_dir, KEEP_BEST)
  try:
    step, params = restore_newest(
        mngr, lambda s: mngr.restore(s, args=ocp.args.StandardRestore(abstract_params)),
        "best checkpoint", say)
  finally:
    mngr.close()
  if step is None:
    raise CheckpointError(f"{best_dir}: no complete checkpoint found")
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
