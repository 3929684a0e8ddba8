"""Re-run a finished run from its saved config.json and compare: bit for bit when the
packages and devices match the original env.json, within TOLERANCE otherwise."""

from __future__ import annotations

import glob
import os
import re

import numpy as np

from fjft.config import experiment as config_lib
from fjft.config import identity
from fjft.errors import ConfigError, FjftError
from fjft.run import rundir

# Across package versions or device kinds the float arithmetic differs in its last bits,
# and fine-tuning amplifies that a little: dev metrics within 0.01 absolute, every
# parameter tensor within 1% relative L2 distance.
TOLERANCE = {"metric_abs": 0.01, "param_rel_l2": 0.01}


def find_run(run: str, workdir: str) -> str:
  """A run directory, given as a path or as (a prefix of) its config hash."""
  if os.path.isfile(os.path.join(run, "config.json")):
    return run
  if not re.fullmatch(r"[0-9a-f]{6,64}", run):
    raise FjftError(f"--run: {run!r} is neither a run directory (no config.json there) "
                    "nor a config hash (6 to 64 hex digits)")
  found = []
  for path in glob.glob(os.path.join(glob.escape(workdir), "**", "config.json"), recursive=True):
    run_dir = os.path.dirname(path)
    if rundir.REPRODUCTIONS in os.path.relpath(run_dir, workdir).split(os.sep):
      continue
    if os.path.basename(run_dir).rsplit("-", 1)[-1] == run[:12] or (
        len(run) > 12 and identity.config_hash(rundir.read_json(path)).startswith(run)):
      found.append(run_dir)
  found = sorted(set(found))
  if not found:
    raise FjftError(f"--run: no run with hash {run} under {workdir}")
  finished = [d for d in found if rundir.is_finished(d)]
  if len(finished) > 1:
    raise FjftError(f"--run: hash {run} matches several finished runs: {finished}; "
                    "pass one run directory")
  return (finished or found)[0]


def env_differences(before: dict, now: dict) -> list[str]:
  """Every difference that can change a result, as readable lines."""
  diffs = []
  for key in ("python",):
    if before.get(key) != now.get(key):
      diffs.append(f"{key}: {before.get(key)} -> {now.get(key)}")
  for section in ("packages", "devices", "git"):
    a, b = before.get(section, {}), now.get(section, {})
    for k in sorted(set(a) | set(b)):
      if a.get(k) != b.get(k):
        diffs.append(f"{section}.{k}: {a.get(k)} -> {b.get(k)}")
  if now.get("git", {}).get("dirty"):
    diffs.append("git: the working tree has uncommitted changes now, so the code may differ "
                 "from any commit")
  # Keyed by file name: the same data under another absolute path is the same data.
  a, b = ({os.path.basename(p): h for p, h in env.get("data_files", {}).items()}
          for env in (before, now))
  for path in sorted(set(a) | set(b)):
    if path not in b:
      diffs.append(f"data file {path}: missing now")
    elif path not in a:
      diffs.append(f"data file {path}: new (not in the original run)")
    elif a[path] != b[path]:
      diffs.append(f"data file {path}: contents changed (sha256 {a[path][:12]} -> "
                   f"{b[path][:12]})")
  return diffs


def exact_expected(before: dict, now: dict) -> bool:
  """Same packages, Python and devices: the run must reproduce bit for bit."""
  return all(before.get(k) == now.get(k) for k in ("python", "packages", "devices"))


def compare_metrics(a: dict, b: dict, exact: bool) -> list[str]:
  out = []
  for split in ("dev", "test"):
    for name in sorted(set(a.get(split, {})) | set(b.get(split, {}))):
      x, y = a.get(split, {}).get(name), b.get(split, {}).get(name)
      same = x == y if exact else (x is not None and y is not None
                                   and abs(x - y) <= TOLERANCE["metric_abs"])
      if not same:
        out.append(f"{split} {name}: {x} vs {y}")
  if a.get("best_step") != b.get("best_step") and exact:
    out.append(f"best_step: {a.get('best_step')} vs {b.get('best_step')}")
  return out


def compare_params(a, b, exact: bool) -> tuple[list[str], float]:
  """Mismatching parameter tensors, and the largest relative L2 distance seen."""
  import jax
  la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  if [p for p, _ in la] != [p for p, _ in lb]:
    return ["the parameter trees differ in structure"], float("inf")
  out, worst = [], 0.0
  for (path, x), (_, y) in zip(la, lb):
    x, y = np.asarray(x), np.asarray(y)
    rel = float(np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-30))
    worst = max(worst, rel)
    if (not np.array_equal(x, y)) if exact else rel > TOLERANCE["param_rel_l2"]:
      out.append(f"{jax.tree_util.keystr(path)}: relative L2 distance {rel:.3g}")
  return out, worst


def reproduce(run: str, workdir: str, say=print) -> bool:
  """Re-runs `run` from its config.json; True when it matches."""
  from fjft.run import runner as run_lib  # heavy: jax, flax, orbax

  orig_dir = find_run(run, workdir)
  if not rundir.is_finished(orig_dir):
    raise FjftError(f"{orig_dir} has not finished (no results.json): nothing to compare with")
  config_path = os.path.join(orig_dir, "config.json")
  saved = rundir.read_json(config_path)
  try:
    config = config_lib.from_dict(saved)
  except ConfigError as e:
    raise ConfigError(f"{config_path}: {e}") from None
  # read before the re-run trains: a broken results.json is said now, not after it
  a = rundir.read_json(rundir.results_path(orig_dir))
  before = rundir.read_json(os.path.join(orig_dir, "env.json"))
  now = rundir.environment(config)
  diffs = env_differences(before, now)
  exact = exact_expected(before, now)
  say(f"reproducing {orig_dir}")
  say("environment differences:" if diffs else "environment: same as the original run")
  for d in diffs:
    say(f"  {d}")
  say("expecting a bit-identical result" if exact else
      f"expecting a match within tolerance {TOLERANCE} (packages or devices differ)")

  repro_root = os.path.join(workdir, rundir.REPRODUCTIONS)
  if os.path.abspath(rundir.run_dir_for(config, repro_root)) == os.path.abspath(orig_dir):
    raise FjftError(f"{orig_dir} is itself a reproduction; reproduce the original run")
  run_lib.run(config, repro_root, rerun=True, say=say)
  new_dir = rundir.run_dir_for(config, repro_root)

  b = rundir.read_json(rundir.results_path(new_dir))
  metric_diffs = compare_metrics(a, b, exact)
  param_diffs, worst = compare_params(run_lib.best_params(orig_dir),
                                      run_lib.best_params(new_dir), exact)
  match = not metric_diffs and not param_diffs
  report = {"original": os.path.abspath(orig_dir), "reproduction": os.path.abspath(new_dir),
            "exact_expected": exact, "tolerance": None if exact else TOLERANCE,
            "environment_differences": diffs, "metric_differences": metric_diffs,
            "param_differences": param_diffs, "max_param_rel_l2": worst, "match": match}
  rundir.write_json(os.path.join(new_dir, "reproduce.json"), report)
  say(f"reproduction: {new_dir}")
  for line in metric_diffs + param_diffs[:20]:
    say(f"  differs: {line}")
  if len(param_diffs) > 20:
    say(f"  ... and {len(param_diffs) - 20} more parameter tensors")
  kind = "bit-identical" if exact else "within tolerance"
  say(f"MATCH ({kind}; largest parameter relative L2 distance {worst:.3g})" if match else
      f"MISMATCH: {len(metric_diffs)} metrics and {len(param_diffs)} parameter tensors differ "
      f"({'exact comparison' if exact else 'beyond tolerance'})")
  return match
