"""User-facing errors: bad input ends in one clear message, never a traceback."""

from __future__ import annotations

import errno
import sys
from typing import Callable


class FjftError(Exception):
  """An error caused by the user's input (config, data, checkpoint, path).

  The message alone must tell the user what is wrong and where.
  """
  exit_code = 2


class ConfigError(FjftError):
  """A config field is unknown, has the wrong type or an invalid value."""


class DataError(FjftError):
  """A data file or row is malformed; the message names file and line."""


class CheckpointError(FjftError):
  """A checkpoint or run directory is missing or corrupt."""


class RunBusyError(FjftError):
  """Another process is training the same run directory."""
  # sysexits' EX_TEMPFAIL: nothing is wrong with the command, try again later (a sweep
  # tells a held run from a failed one by it).
  exit_code = 75


def os_error_text(e: OSError) -> str:
  """An OSError as one line naming the file, and what to do about a full disk."""
  where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f) or "a file"
  text = f"cannot write or read {where}: {e.strerror or e}"
  if e.errno in (errno.ENOSPC, errno.EDQUOT):
    text += ("; free space (or move the workdir) and run the same command again: the run "
             "resumes from its newest complete checkpoint")
  return text


def exit_on_user_error(main: Callable[..., object]) -> Callable[..., object]:
  """Wraps an absl main so an FjftError prints `error: <message>` and exits with its
  exit_code (2; 75 for a run another process holds)."""

  def wrapped(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except FjftError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(e.exit_code)
    except OSError as e:   # the file system said no (a full disk, a quota, permissions)
      print(f"error: {os_error_text(e)}", file=sys.stderr)
      sys.exit(2)

  return wrapped
