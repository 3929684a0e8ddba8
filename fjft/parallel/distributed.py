"""One run over several processes (hosts), on JAX's own distributed runtime.

`python -m fjft.train --distributed` joins the job's processes before anything touches a
device; from then on `jax.devices()` lists every host's devices and the mesh spans them.
Where the job's layout comes from:
- FJFT_COORDINATOR=<host:port>, FJFT_NUM_PROCESSES=<n>, FJFT_PROCESS_ID=<i>, when set
  (launch/multihost_local.sh sets them; any launcher can);
- otherwise JAX detects it: SLURM (srun's SLURM_* variables), Cloud TPU VMs and GKE,
  Open MPI (mpirun).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax
from jax.experimental import multihost_utils

from fjft.errors import ConfigError, FjftError

ENV = ("FJFT_COORDINATOR", "FJFT_NUM_PROCESSES", "FJFT_PROCESS_ID")


def layout_from_env(environ: Mapping[str, str]) -> dict:
  """jax.distributed.initialize's arguments from FJFT_* variables ({} when none is set:
  JAX then detects the cluster)."""
  given = {k: environ.get(k, "") for k in ENV}
  if not any(given.values()):
    return {}
  missing = [k for k, v in given.items() if not v]
  if missing:
    raise ConfigError(f"--distributed: set all of {', '.join(ENV)} or none of them "
                      f"(missing {', '.join(missing)})")
  try:
    num, pid = int(given["FJFT_NUM_PROCESSES"]), int(given["FJFT_PROCESS_ID"])
  except ValueError:
    raise ConfigError(f"--distributed: FJFT_NUM_PROCESSES and FJFT_PROCESS_ID must be integers "
                      f"(got {given['FJFT_NUM_PROCESSES']!r}, {given['FJFT_PROCESS_ID']!r})") from None
  if not 0 <= pid < num:
    raise ConfigError(f"--distributed: FJFT_PROCESS_ID={pid} is not in [0, {num})")
  return {"coordinator_address": given["FJFT_COORDINATOR"], "num_processes": num,
          "process_id": pid}


def initialize(environ: Mapping[str, str] = os.environ) -> None:
  """Joins this process to its job; returns once every process has joined."""
  layout = layout_from_env(environ)
  try:
    jax.distributed.initialize(**layout)
  except (ValueError, RuntimeError) as e:
    where = (f"coordinator {layout['coordinator_address']}, process {layout['process_id']} of "
             f"{layout['num_processes']}" if layout else
             "no FJFT_* variables set, and JAX found no SLURM, TPU or MPI job")
    raise FjftError(f"--distributed: could not join the job's processes ({where}): "
                    f"{type(e).__name__}: {e}") from None


def barrier(name: str) -> None:
  """Waits until every process gets here (no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def is_main() -> bool:
  """Process 0 prints, logs and writes the run's files; the others only compute."""
  return jax.process_index() == 0
