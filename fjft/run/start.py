"""Starting a run: its directory (or its finished results), the mesh, and the checks that
must pass before anything is read or compiled."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fjft.config import experiment as config_lib
from fjft.errors import ConfigError
from fjft.parallel import distributed
from fjft.parallel import mesh as mesh_lib
from fjft.run import lock as run_lock
from fjft.run import rundir


def begin_run(config, workdir: str, rerun: bool, say) -> tuple[str, dict | None, Any, Any]:
  """(run dir, its results if it already finished, mesh, the run's lock); mesh and lock
  are None when finished. The caller releases the lock when the run ends (`with lock:`)."""
  check_attention_impl(config.model.attention_impl, config.model.compute_dtype)
  run_dir, finished, lock = start_run(config, workdir, rerun, say)
  if finished is not None:
    return run_dir, finished, None, None
  try:
    mesh = mesh_lib.make_mesh(config.mesh)
    check_batch_sizes(config, mesh)
  except BaseException:
    lock.release()
    raise
  say(f"run {run_dir}\nmesh {mesh_lib.describe(mesh)}")
  return run_dir, None, mesh, lock


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


def start_run(config, workdir: str, rerun: bool, say):
  """(run dir, its results if it already finished, the run's lock): a finished run is
  reported, not retrained, unless `rerun`; otherwise the run's lock is taken (fjft.run.lock:
  one process group trains a run at a time) before anything in the dir is written, and the
  dir is made (or kept, to resume; with `rerun`, emptied)."""
  run_dir = rundir.run_dir_for(config, workdir)
  if rundir.is_finished(run_dir) and not rerun:
    return _finished(run_dir, say)
  lock = run_lock.acquire_for_job(run_dir, say)
  try:
    if rundir.is_finished(run_dir) and not rerun:   # it finished while we looked
      lock.release()
      return _finished(run_dir, say)
    if rerun and distributed.is_main():
      rundir.clear(run_dir, keep=(run_lock.LOCK_NAME,))
    run_dir = rundir.prepare(config, workdir)
    distributed.barrier("run directory ready")  # the other hosts write into it next
  except BaseException:
    lock.release()
    raise
  return run_dir, None, lock


def _finished(run_dir: str, say):
  say(f"run {run_dir} already finished (results.json); pass --rerun to train it again")
  return run_dir, rundir.read_json(rundir.results_path(run_dir)), None


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
