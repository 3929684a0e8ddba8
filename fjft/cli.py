"""Shared absl plumbing of the entry points: --config and --config.<field>=<value> flags."""

from __future__ import annotations

import sys

from absl import flags
from absl import logging as absl_logging

from fjft.config import experiment as config_lib
from fjft.errors import ConfigError


def define_config_flag() -> None:
  flags.DEFINE_string("config", None, "Experiment file, optionally with an arg: experiments/x.py[:arg]")
  flags.DEFINE_string("workdir", "runs", "Folder that holds run directories.")


def split_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """Takes the --config.<field>=<value> flags out of argv (absl would reject them)."""
  rest, overrides = [], []
  it = iter(argv)
  for arg in it:
    if arg.startswith("--config."):
      key, eq, value = arg[len("--config."):].partition("=")
      if not eq:
        try:
          value = next(it)
        except StopIteration:
          raise ConfigError(f"{arg}: missing value") from None
      overrides.append((key, value))
    else:
      rest.append(arg)
  return rest, overrides


OVERRIDES: list[tuple[str, str]] = []


def flags_parser(argv: list[str]):
  """absl flags_parser for app.run: parses ordinary flags, keeps field overrides aside."""
  try:
    rest, overrides = split_overrides(argv)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  OVERRIDES[:] = overrides
  try:
    return flags.FLAGS(rest)
  except flags.Error as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def config_spec() -> str:
  """The --config flag, which every config-driven main requires."""
  spec = flags.FLAGS.config
  if not spec:
    raise ConfigError("--config is required, e.g. --config=experiments/quickstart.py")
  return spec


def load_config_from_flags():
  return config_lib.load_config(config_spec(), OVERRIDES)


def begin(argv: list[str]) -> None:
  """Start of every main: no positional arguments, and quiet library logs."""
  if len(argv) > 1:
    from absl import app
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  quiet_libraries()


def quiet_libraries() -> None:
  """Orbax logs every save at INFO through absl; the run's own console lines are enough."""
  absl_logging.set_verbosity(absl_logging.WARNING)
