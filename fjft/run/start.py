"""Starting a run: its directory (or its finished results), the mesh, and the checks that
must pass before anything is read or compiled."""

from __future__ import annotations

import os
import shutil
from typing import Any

import jax
import jax.numpy as jnp

from fjft.config import experiment as config_lib
from fjft.errors import ConfigError
from fjft.parallel import distributed
from fjft.parallel import mesh as mesh_lib
from fjft.run import rundir


def begin_run(config, workdir: str, rerun: bool, say) -> tuple[str, dict | None, Any]:
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
