"""Shared absl plumbing of the entry points: --config and --config.<field>=<value> flags."""

from __future__ import annotations

import logging
import os
import sys
import threading

from absl import flags
from absl import logging as absl_logging

from fjft.config import experiment as config_lib
from fjft.errors import ConfigError, FjftError, restore_interrupts


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
  return plain_flags_parser(rest)


def plain_flags_parser(argv: list[str]):
  """absl flags_parser of the commands without a config: a bad or missing flag is one
  `error:` line and exit 2, as every other user error."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def check_output(output: str | None, **inputs: str | None) -> None:
  """--output must not be one of the command's input files (it would be overwritten)."""
  if not output or not os.path.exists(output):
    return
  for flag, path in inputs.items():
    if path and os.path.exists(path) and os.path.samefile(output, path):
      raise FjftError(f"--output={output} is the --{flag} file: writing it would overwrite "
                      "the input; give another --output")


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
  restore_interrupts()
  if len(argv) > 1:
    from absl import app
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  quiet_libraries()


def quiet_libraries() -> None:
  """Orbax logs every save at INFO through absl; the run's own console lines are enough.
  Errors of background threads are said in one line each (see contain_background_errors)."""
  absl_logging.set_verbosity(absl_logging.WARNING)
  contain_background_errors()


class _OneLine(logging.Filter):
  """Orbax's writer threads log a failed write with its traceback, each thread the same
  one; the main thread then raises it, and fjft reports it once, naming the checkpoint.
  The records stay, as one line each (naming the file), said once."""

  def __init__(self):
    super().__init__()
    self._said = set()

  def filter(self, record: logging.LogRecord) -> bool:
    if not (record.exc_info or record.exc_text):
      return True
    exc = record.exc_info[1] if record.exc_info else None
    line = " ".join(record.getMessage().split())
    if exc is not None and str(exc) not in line:
      line += f": {type(exc).__name__}: {' '.join(str(exc).split())}"
    record.msg, record.args, record.exc_info, record.exc_text = line, (), None, None
    key = str(exc) if exc is not None else line   # one error, logged by several threads
    if key in self._said:
      return False
    self._said.add(key)
    return True


def _unraisable(info) -> None:
  # A failed Orbax read or write leaves TensorStore callbacks that reach asyncio's closed
  # event loop: the failure itself was reported (naming the checkpoint), these add nothing.
  if isinstance(info.exc_value, RuntimeError) and "Event loop is closed" in str(info.exc_value):
    return
  # One line: TensorStore's messages carry their whole multi-line spec.
  text = " ".join(str(info.exc_value).split())
  print(f"warning: ignored in {info.object!r}: {type(info.exc_value).__name__}: "
        f"{text[:300] + ' ...' if len(text) > 300 else text}", file=sys.stderr)


def _thread_error(args) -> None:
  if args.exc_type is SystemExit:
    return
  name = args.thread.name if args.thread else "?"
  print(f"error in background thread {name}: {args.exc_type.__name__}: "
        f"{' '.join(str(args.exc_value).split())}", file=sys.stderr)


def contain_background_errors() -> None:
  """Errors raised away from the main thread (Orbax's and TensorBoard's writer threads,
  callbacks after a failed read) become one line on stderr instead of a traceback each."""
  handler = absl_logging.get_absl_handler()
  if not any(isinstance(f, _OneLine) for f in handler.filters):
    handler.addFilter(_OneLine())
  sys.unraisablehook = _unraisable
  threading.excepthook = _thread_error
