"""The run directory: <workdir>/<name>-<hash12>/ with config.json, env.json, results.json."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys

import jax

from fjft.config import experiment as config_lib
from fjft.config import identity
from fjft.errors import FjftError

PACKAGES = ("fjft", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "tokenizers",
            "ml-collections", "scikit-learn")
# fjft.reproduce re-runs a run under <workdir>/reproductions/: lookups by hash skip it.
REPRODUCTIONS = "reproductions"
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt")


def run_dir_for(config, workdir: str) -> str:
  return os.path.join(workdir, identity.run_name(config))


def write_json(path: str, obj) -> None:
  """Writes atomically, so a kill never leaves a half-written file behind.

  Only process 0 writes run files; on other hosts this does nothing.
  """
  if jax.process_index() != 0:
    return
  tmp = path + ".tmp"
  try:
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.write("\n")
      f.flush()
      os.fsync(f.fileno())   # on disk before the rename makes it the file
  except OSError:
    with contextlib.suppress(OSError):
      os.remove(tmp)   # a full disk: leave neither half a file nor the space it took
    raise
  os.replace(tmp, path)


def read_json(path: str) -> dict:
  """A run's JSON file (config, model, results, env), which holds one object."""
  try:
    with open(path, encoding="utf-8") as f:
      value = json.load(f)
  except FileNotFoundError:
    raise FjftError(f"{path} does not exist") from None
  except json.JSONDecodeError as e:
    raise FjftError(f"{path}: not valid JSON ({e})") from None
  except UnicodeDecodeError as e:
    raise FjftError(f"{path}: not valid JSON (not UTF-8 text: {e.reason} at byte {e.start})") from None
  if not isinstance(value, dict):
    raise FjftError(f"{path}: expected a JSON object, got {type(value).__name__}")
  return value


def file_fingerprint(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def data_fingerprints(data_path: str) -> dict:
  """sha256 of each data file under data.path (a hub dataset name has none)."""
  if os.path.isfile(data_path):
    return {os.path.abspath(data_path): file_fingerprint(data_path)}
  if os.path.isdir(data_path):
    return {os.path.abspath(os.path.join(data_path, n)): file_fingerprint(os.path.join(data_path, n))
            for n in sorted(os.listdir(data_path)) if n.endswith(DATA_SUFFIXES)}
  return {}


def _git_state() -> dict:
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                            text=True, timeout=10).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return {"commit": None, "dirty": None}
  return {"commit": commit or None, "dirty": bool(dirty) if commit else None}


def environment(config) -> dict:
  versions = {}
  for p in PACKAGES:
    try:
      versions[p] = importlib.metadata.version(p)
    except importlib.metadata.PackageNotFoundError:
      versions[p] = None
  devices = jax.devices()
  return {
      "python": sys.version.split()[0],
      "platform": platform.platform(),
      "packages": versions,
      "devices": {"count": len(devices), "kind": devices[0].device_kind,
                  "platform": devices[0].platform, "processes": jax.process_count()},
      "data_files": data_fingerprints(config.data.path),
      "git": _git_state(),
  }


def prepare(config, workdir: str) -> str:
  """Creates the run directory and writes config.json and env.json (process 0)."""
  run_dir = run_dir_for(config, workdir)
  if jax.process_index() == 0:
    os.makedirs(run_dir, exist_ok=True)
  write_json(os.path.join(run_dir, "config.json"), config_lib.to_dict(config))
  write_json(os.path.join(run_dir, "env.json"), environment(config))
  return run_dir


def clear(run_dir: str, keep: tuple[str, ...] = ()) -> None:
  """Empties a run directory (--rerun) but for the entries named in `keep` (its lock)."""
  if not os.path.isdir(run_dir):
    return
  for name in os.listdir(run_dir):
    if name in keep:
      continue
    path = os.path.join(run_dir, name)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    else:
      os.remove(path)


def results_path(run_dir: str) -> str:
  return os.path.join(run_dir, "results.json")


def is_finished(run_dir: str) -> bool:
  return os.path.isfile(results_path(run_dir))
