"""Experiment configs: load, override, validate, canonical JSON and the run hash.

An experiment file defines `get_config(arg: str | None) -> ConfigDict`. The string
after `:` in `--config=experiments/x.py:model=minilm,steps=500` is passed as `arg`;
`--config.optim.lr=1e-4` overrides one field. Configs are locked: an unknown field is
an error naming the closest valid one.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import importlib.util
import json
import os
import traceback
from typing import Any, Iterable

import ml_collections

from fjft.config import bounds, defaults
from fjft.errors import ConfigError, FjftError

REQUIRED_FIELDS = ("name", "seed", "model.name", "data.path", "train.steps",
                   "train.batch_size", "optim.lr")


def load_module(path: str):
  """Imports an experiment file by path."""
  if not os.path.isfile(path):
    raise ConfigError(f"--config: experiment file {path!r} does not exist")
  spec = importlib.util.spec_from_file_location(
      "fjft_experiment_" + hashlib.sha1(path.encode()).hexdigest()[:8], path)
  if spec is None:
    raise ConfigError(f"--config: experiment file {path!r} is not a Python file (.py)")
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as e:
    where = f"{path}:{e.lineno}" if e.lineno else path
    raise ConfigError(f"{where}: syntax error in experiment file: {e.msg}") from None
  except ValueError as e:   # source bytes that are not text (a NUL byte)
    raise ConfigError(f"{path}: experiment file is not Python source: {e}") from None
  except FjftError:
    raise
  except Exception as e:   # the experiment file's own code failed as it was imported
    raise ConfigError(raised_in(path, e, "importing it")) from None
  if not hasattr(module, "get_config"):
    raise ConfigError(f"{path}: an experiment file must define get_config(arg)")
  return module


def split_spec(spec: str) -> tuple[str, str | None]:
  """'experiments/x.py:a=1' -> ('experiments/x.py', 'a=1')."""
  path, sep, arg = spec.partition(".py:")
  if sep:
    return path + ".py", arg
  return spec, None


def parse_arg(arg: str | None, defaults: dict[str, Any]) -> ml_collections.ConfigDict:
  """Parses a config arg 'k=v,k2=v2' against defaults (types follow the defaults)."""
  out = ml_collections.ConfigDict(dict(defaults))
  if not arg:
    return out
  for item in arg.split(","):
    key, eq, value = item.partition("=")
    key = key.strip()
    if not eq or key not in defaults:
      raise ConfigError(
          f"config arg {item!r}: expected key=value with key in {sorted(defaults)}"
          + ("" if key in defaults else _suggest(key, defaults)))
    out[key] = _coerce(value.strip(), defaults[key], f"config arg {key}")
  return out


def load_config(spec: str, overrides: Iterable[tuple[str, str]] = ()) -> ml_collections.ConfigDict:
  """Builds the locked, validated config of `--config=spec` plus field overrides."""
  path, arg = split_spec(spec)
  module = load_module(path)
  try:
    config = module.get_config(arg)
  except FjftError:
    raise
  except Exception as e:   # the experiment's own code: said with its line, not a traceback
    raise ConfigError(raised_in(path, e, f"get_config({arg!r})")) from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"{path}: get_config must return an ml_collections.ConfigDict "
                      f"(got {type(config).__name__})")
  _check_known_fields(config, path)
  config.lock()
  for key, value in overrides:
    set_field(config, key, value)
  validate(config)
  return config


def raised_in(path: str, e: Exception, doing: str) -> str:
  """'<file>:<line>: <doing> raised <type>: <message>', the line the deepest one of the
  experiment file that the error passed through."""
  line = next((f.lineno for f in reversed(traceback.extract_tb(e.__traceback__))
               if os.path.abspath(f.filename) == os.path.abspath(path)), None)
  where = f"{path}:{line}" if line else path
  return f"{where}: {doing} raised {type(e).__name__}: {e}"


def _check_known_fields(config: ml_collections.ConfigDict, path: str) -> None:
  """A field get_config added that its task's defaults lack is a typo the run would ignore."""
  from fjft import tasks   # the tasks import this module
  name = config.get("task", None)
  if name not in tasks.TASKS:
    return   # said by validate
  known = flat_keys(tasks.get(name).default_config())
  unknown = [k for k in flat_keys(config) if k not in known and not _under_open_field(k)]
  if unknown:
    raise ConfigError(f"{path}: get_config sets {unknown[0]!r}, which is not a field of a "
                      f"{name} config" + _suggest(unknown[0], known))


def _under_open_field(key: str) -> bool:
  """Fields whose entries are the user's own (sharding rules name logical axes)."""
  return key.startswith("sharding_rules.")


def from_dict(d: dict) -> ml_collections.ConfigDict:
  """The locked, validated config saved in a run's config.json."""
  config = ml_collections.ConfigDict(d)
  config.lock()
  validate(config)
  return config


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  keys = []
  for k, v in config.items():
    full = prefix + k
    if isinstance(v, ml_collections.ConfigDict):
      keys.extend(flat_keys(v, full + "."))
    else:
      keys.append(full)
  return keys


def _suggest(key: str, valid: Iterable[str]) -> str:
  close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
  return f"; did you mean {close[0]!r}?" if close else ""


def get_field(config: ml_collections.ConfigDict, key: str) -> Any:
  node = config
  for part in key.split("."):
    node = node[part]
  return node


def set_field(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
  """Sets a dotted field; a string value is parsed to the field's type."""
  keys = flat_keys(config)
  if key not in keys:
    raise ConfigError(f"unknown config field {key!r}" + _suggest(key, keys))
  *parents, leaf = key.split(".")
  node = config
  for p in parents:
    node = node[p]
  old = node[leaf]
  if isinstance(value, str):
    value = _coerce(value, old, f"config field {key}")
  with node.unlocked():
    node[leaf] = value


def _coerce(text: str, like: Any, field: str) -> Any:
  """Parses `text` into the type of `like` (the field's current value); `field` names it
  in the error ("config field train.steps", "config arg steps")."""
  try:
    if isinstance(like, bool):
      if text.lower() in ("true", "1", "yes"):
        return True
      if text.lower() in ("false", "0", "no"):
        return False
      raise ValueError(text)
    if isinstance(like, int):
      return int(text)
    if isinstance(like, float):
      return float(text)
    if isinstance(like, (tuple, list)):
      value = ast.literal_eval(text)
      return type(like)(value if isinstance(value, (tuple, list)) else (value,))
    if like is None:
      try:
        return ast.literal_eval(text)
      except (ValueError, SyntaxError):
        return text
    return text
  except (ValueError, SyntaxError):
    raise ConfigError(
        f"{field}: cannot parse {text!r} as {type(like).__name__}") from None


def validate(config: ml_collections.ConfigDict) -> None:
  keys = set(flat_keys(config))
  for field in REQUIRED_FIELDS:
    if field not in keys:
      raise ConfigError(f"config is missing the required field {field!r}")
  values = {key: get_field(config, key) for key in keys}
  problems = bounds.check(values, defaults.BOUNDS) + bounds.check(values, _task_bounds(config))
  if problems:
    field, why = problems[0]
    raise ConfigError(f"config field {field} {why} (got {values[field]!r})")
  problems = bounds.check_buckets(values)
  if problems:
    field, why = problems[0]
    raise ConfigError(f"config field {field} {why} (got {values[field]!r})")
  name = values["name"]
  if (not isinstance(name, str) or not name.strip()
      or any(c in name for c in "/\\\0") or name in (".", "..")):
    raise ConfigError(f"config field name must be a non-empty name without '/' or '\\' "
                      f"(it names the run directory <workdir>/<name>-<hash>; got {name!r})")
  if "train.grad_accum" in keys:
    accum = config.train.grad_accum
    if accum < 1 or config.train.batch_size % accum:
      raise ConfigError(
          f"config field train.grad_accum={accum} must be >= 1 and divide "
          f"train.batch_size={config.train.batch_size}")
  if "data.on_bad_row" in keys and config.data.on_bad_row not in ("error", "skip"):
    raise ConfigError(
        f"config field data.on_bad_row must be 'error' or 'skip' (got {config.data.on_bad_row!r})")


def _task_bounds(config) -> dict:
  """The ranges of the task's own fields (its Task's `bounds`); an unknown task is said
  here too, before anything runs."""
  from fjft import tasks   # the tasks import this module
  return tasks.get(config.get("task", tasks.UNNAMED_RUN_TASK)).bounds


def to_dict(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json())
