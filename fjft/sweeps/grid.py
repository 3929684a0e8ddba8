"""Sweeps: an experiment file's `sweep()` expanded into planned runs.

An experiment file may define `sweep()` (or `sweep(arg)`, given the same arg as
get_config) returning a list of field overrides, one dict per run:

  def sweep():
    return sweeps.product({"optim.lr": [1e-4, 3e-5]}, {"optim.warmup_fraction": [0.0, 0.1]})

`product` crosses its parts, `zip` pairs them element by element; a part is either a
dict of field -> list of values or a list of override dicts, so the two nest. Each
override value becomes the `--config.<field>=<value>` text that the run's own command
line carries, and the run's config is built from that text, so the hash planned here is
the hash the run computes.
"""

from __future__ import annotations

import builtins
import dataclasses
import glob
import inspect
import itertools
import os
import re
import shlex
import sys
from typing import Any, Iterable, Sequence

from fjft.config import experiment as config_lib
from fjft.config import identity
from fjft.run import rundir
from fjft.errors import ConfigError, FjftError

Overrides = dict[str, Any]


def _as_runs(part: dict[str, Sequence[Any]] | Sequence[Overrides], how: str) -> list[Overrides]:
  """A dict of field -> values (crossed for product, paired for zip) or a list of dicts."""
  if isinstance(part, dict):
    for key, values in part.items():
      if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ConfigError(f"sweep {how}: field {key!r} needs a list of values, got {values!r}")
    keys = list(part)
    if how == "product":
      return [dict(builtins.zip(keys, combo)) for combo in itertools.product(*part.values())]
    return list(builtins.zip(*[[{k: v} for v in part[k]] for k in keys]))
  runs = list(part)
  for r in runs:
    if not isinstance(r, dict):
      raise ConfigError(f"sweep {how}: expected a dict of overrides per run, got {r!r}")
  return runs


def _merge(dicts: Iterable[Overrides]) -> Overrides:
  out: Overrides = {}
  for d in dicts:
    for k, v in d.items():
      if k in out and out[k] != v:
        raise ConfigError(f"sweep: field {k!r} set twice in one run ({out[k]!r} and {v!r})")
      out[k] = v
  return out


def product(*parts) -> list[Overrides]:
  """Every combination of the parts: product({"a": [1, 2]}, {"b": [3, 4]}) has 4 runs."""
  runs = [_as_runs(p, "product") for p in parts]
  return [_merge(combo) for combo in itertools.product(*runs)]


def zip(*parts) -> list[Overrides]:  # noqa: A001 - named as in big_vision / kauldron configs
  """Element-wise: zip({"a": [1, 2], "b": [3, 4]}) has 2 runs, (a=1, b=3) and (a=2, b=4)."""
  runs = []
  for p in parts:
    if isinstance(p, dict):
      lengths = {k: len(v) for k, v in p.items()}
      if len(set(lengths.values())) > 1:
        raise ConfigError(f"sweep zip: value lists differ in length: {lengths}")
      runs.append([_merge(group) for group in _as_runs(p, "zip")])
    else:
      runs.append(_as_runs(p, "zip"))
  lengths = [len(r) for r in runs]
  if len(set(lengths)) > 1:
    raise ConfigError(f"sweep zip: parts differ in length: {lengths}")
  return [_merge(group) for group in builtins.zip(*runs)]


def value_text(value: Any) -> str:
  """The --config.<field>= text of a sweep value (parsed back to the field's type)."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, (tuple, list)):
    return repr(tuple(value))
  return value if isinstance(value, str) else repr(value)


@dataclasses.dataclass
class PlannedRun:
  index: int
  overrides: list[tuple[str, str]]   # (field, value text), in the sweep's order
  config: Any                        # the resolved ConfigDict
  run_name: str                      # <name>-<hash12>
  label: str                         # swept values, readable and safe as a folder name
  workdir: str                       # <sweep dir>/<label>
  finished_dir: str | None = None    # where this hash already finished, if it did

  @property
  def run_dir(self) -> str:
    return os.path.join(self.workdir, self.run_name)

  @property
  def hash12(self) -> str:
    return self.run_name.rsplit("-", 1)[1]


@dataclasses.dataclass
class Plan:
  spec: str
  sweep_dir: str
  swept: list[str]        # fields whose value differs between runs
  runs: list[PlannedRun]


def load_sweep(spec: str) -> list[Overrides]:
  path, arg = config_lib.split_spec(spec)
  module = config_lib.load_module(path)
  fn = getattr(module, "sweep", None)
  if fn is None:
    raise ConfigError(f"{path} defines no sweep(); add one returning a list of override dicts")
  try:
    runs = fn(arg) if inspect.signature(fn).parameters else fn()
  except FjftError:
    raise
  except Exception as e:   # the experiment's own code: said with its line, not a traceback
    raise ConfigError(config_lib.raised_in(path, e, "sweep()")) from None
  if not isinstance(runs, (list, tuple)) or not runs:
    raise ConfigError(f"{path}: sweep() must return a non-empty list of override dicts")
  for i, r in enumerate(runs):
    if not isinstance(r, dict):
      raise ConfigError(f"{path}: sweep() run {i} is {r!r}, not a dict of field overrides")
  return list(runs)


def _load_run(spec: str, i: int, raw: dict, overrides: list[tuple[str, str]]):
  """Run i's config; a field of its overrides that is unknown or does not parse names it."""
  try:
    return config_lib.load_config(spec, overrides)
  except ConfigError as e:
    if any(k in str(e) for k in raw):
      path = config_lib.split_spec(spec)[0]
      raise ConfigError(f"{path}: sweep() run {i} {raw!r}: {e}") from None
    raise


def _short_names(fields: list[str]) -> dict[str, str]:
  """optim.lr -> lr, unless two swept fields share their last part."""
  last = [f.rsplit(".", 1)[-1] for f in fields]
  return {f: (s if last.count(s) == 1 else f) for f, s in builtins.zip(fields, last)}


def _label(overrides: list[tuple[str, str]], swept: list[str]) -> str:
  names = _short_names(swept)
  parts = [f"{names[k]}={v}" for k, v in overrides if k in names]
  text = ",".join(parts) or "base"
  return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)[:100]


def plan(spec: str, workdir: str, extra: Iterable[tuple[str, str]] = ()) -> Plan:
  """Expands the sweep of `spec` into runs under <workdir>/<name>-sweep/."""
  raw = load_sweep(spec)
  extra = list(extra)
  runs_text = [extra + [(k, value_text(v)) for k, v in r.items()] for r in raw]
  configs = [_load_run(spec, i, raw[i], ov) for i, ov in enumerate(runs_text)]
  keys = sorted({k for ov in runs_text for k, _ in ov})
  swept = [k for k in keys
           if len({repr(config_lib.get_field(c, k)) for c in configs}) > 1] if len(configs) > 1 \
      else [k for k, _ in runs_text[0]]
  sweep_dir = os.path.join(workdir, f"{configs[0].name}-sweep")
  runs, seen = [], {}
  for i, (ov, cfg) in enumerate(builtins.zip(runs_text, configs)):
    name = identity.run_name(cfg)
    if name in seen:
      raise ConfigError(f"sweep runs {seen[name]} and {i} have the same config ({name})")
    seen[name] = i
    label = _label(ov, swept)
    run = PlannedRun(i, ov, cfg, name, label, os.path.join(sweep_dir, label))
    run.finished_dir = find_finished(sweep_dir, name)
    runs.append(run)
  return Plan(spec, sweep_dir, swept, runs)


def find_finished(root: str, run_name: str) -> str | None:
  """A finished run directory named `run_name` anywhere under `root`."""
  for path in sorted(glob.glob(os.path.join(glob.escape(root), "**", run_name), recursive=True)):
    if rundir.REPRODUCTIONS in os.path.relpath(path, root).split(os.sep):
      continue
    if rundir.is_finished(path):
      return path
  return None


def train_command(spec: str, run: PlannedRun, python: str = sys.executable) -> list[str]:
  """The argv that trains (or resumes) `run` as an ordinary run."""
  return ([python, "-m", "fjft.train", f"--config={spec}", f"--workdir={run.workdir}"]
          + [f"--config.{k}={v}" for k, v in run.overrides])


def shell_command(argv: list[str]) -> str:
  return " ".join(shlex.quote(a) for a in argv)


def slurm_script(p: Plan, parallel: int) -> str:
  """A SLURM array job: one array task per pending run, `parallel` at a time."""
  pending = [r for r in p.runs if not r.finished_dir]
  lines = ["#!/bin/bash", f"#SBATCH --job-name={os.path.basename(p.sweep_dir)}"]
  if pending:
    throttle = f"%{parallel}" if parallel > 0 else ""
    lines.append(f"#SBATCH --array=0-{len(pending) - 1}{throttle}")
  lines += [f"#SBATCH --output={os.path.abspath(p.sweep_dir)}/logs/slurm-%A_%a.log",
            f"# {len(p.runs)} runs of the sweep in {p.spec}; "
            f"{len(p.runs) - len(pending)} already finished and left out.",
            "# When the array is done, rerun the sweep command: it skips the finished runs",
            "# and writes the summary.",
            "set -euo pipefail", f"cd {shlex.quote(os.getcwd())}", "RUNS=("]
  lines += [f"  {shlex.quote(shell_command(train_command(p.spec, r, 'python')))}"
            for r in pending]
  lines += [")", 'eval "${RUNS[$SLURM_ARRAY_TASK_ID]}"']
  return "\n".join(lines) + "\n"
