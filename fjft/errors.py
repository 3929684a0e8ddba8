"""User-facing errors: bad input ends in one clear message, never a traceback."""

from __future__ import annotations

import errno
import os
import signal
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
  exit_code (2; 75 for a run another process holds), and a Ctrl-C prints `interrupted`
  and exits 130."""

  def wrapped(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except FjftError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(e.exit_code)
    except OSError as e:   # the file system said no (a full disk, a quota, permissions)
      print(f"error: {os_error_text(e)}", file=sys.stderr)
      sys.exit(2)
    except KeyboardInterrupt:   # Ctrl-C outside the training loop (which saves first)
      print("interrupted", file=sys.stderr)
      sys.exit(INTERRUPTED_EXIT)

  return wrapped


INTERRUPTED_EXIT = 130   # 128 + SIGINT, as a shell reports a command Ctrl-C stopped


def say_interrupts_in_one_line() -> None:
  """A command's Ctrl-C before its main runs (while it imports JAX: seconds) prints
  `interrupted` and exits 130, not a traceback. Until the main starts (cli.begin calls
  restore_interrupts) SIGINT exits at once: raised inside a C extension's import, a
  KeyboardInterrupt becomes an ImportError traceback or a crash. Nothing is open yet.
  A KeyboardInterrupt that reaches the top later is said in one line too (Python then
  exits by SIGINT, after its exit handlers: a run's lock release)."""
  if signal.getsignal(signal.SIGINT) is signal.default_int_handler:   # not ignored (&)
    signal.signal(signal.SIGINT, _interrupted_while_starting)
  previous = sys.excepthook

  def hook(exc_type, exc, tb):
    if _caused_by_interrupt(exc):
      print("interrupted", file=sys.stderr)
    else:
      previous(exc_type, exc, tb)

  sys.excepthook = hook


def _caused_by_interrupt(exc: BaseException | None) -> bool:
  """A KeyboardInterrupt, or an error raised while handling one (a Ctrl-C inside a C
  extension's import surfaces as the ImportError it caused)."""
  seen = set()
  while exc is not None and id(exc) not in seen:
    if isinstance(exc, KeyboardInterrupt):
      return True
    seen.add(id(exc))
    exc = exc.__cause__ or exc.__context__
  return False


def _interrupted_while_starting(signum, frame) -> None:
  del signum, frame
  sys.stderr.write("interrupted\n")
  sys.stderr.flush()
  os._exit(INTERRUPTED_EXIT)


def restore_interrupts() -> None:
  """From a command's main on, Ctrl-C is a KeyboardInterrupt again (the training loop
  turns it into a stop that saves a checkpoint first)."""
  if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
    signal.signal(signal.SIGINT, signal.default_int_handler)
