"""User-facing errors: bad input ends in one clear message, never a traceback."""

from __future__ import annotations

import sys
from typing import Callable


class FjftError(Exception):
  """An error caused by the user's input (config, data, checkpoint, path).

  The message alone must tell the user what is wrong and where.
  """


class ConfigError(FjftError):
  """A config field is unknown, has the wrong type or an invalid value."""


class DataError(FjftError):
  """A data file or row is malformed; the message names file and line."""


class CheckpointError(FjftError):
  """A checkpoint or run directory is missing or corrupt."""


def exit_on_user_error(main: Callable[..., object]) -> Callable[..., object]:
  """Wraps an absl main so an FjftError prints `error: <message>` and exits 2."""

  def wrapped(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except FjftError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)

  return wrapped
