"""One process (group) trains a run at a time: a lock file in the run directory.

Two processes training one run dir (a re-submitted SLURM array task, a second terminal, a
sweep started twice) would write the same checkpoint folders and corrupt them. The lock
is <run>/train.lock, created with O_EXCL (atomic on local and network file systems) and
holding who took it (host, pid, the process's start time, since when). It is released on
every exit the interpreter sees; after a crash or kill -9 it stays, and is taken over when
its holder is gone:
- same host (hostname and boot id agree): the pid is dead, or is a newer process (start
  time differs);
- another host, whose processes cannot be seen from here: the holder renews the file's
  modification time every RENEW_S seconds, so a lock not renewed for STALE_S is stale.
A multi-host job takes the lock once, on process 0, and every process learns the outcome.
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
import socket
import threading
import time

import numpy as np

from fjft.errors import RunBusyError

LOCK_NAME = "train.lock"
RENEW_S = 30.0
STALE_S = 300.0


def _boot_id() -> str:
  try:
    with open("/proc/sys/kernel/random/boot_id") as f:
      return f.read().strip()
  except OSError:
    return ""


def _start_time(pid: int) -> str:
  """The process's start time in clock ticks since boot (/proc), "" where unknown: tells a
  live holder from a new process that reused its pid."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rpartition(")")[2].split()[19]
  except (OSError, IndexError):
    return ""


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:   # exists, under another user
    return True
  return True


def _me() -> dict:
  pid = os.getpid()
  return {"host": socket.gethostname(), "boot_id": _boot_id(), "pid": pid,
          "start_time": _start_time(pid),
          "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def describe_holder(holder: dict) -> str:
  return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
          f"since {holder.get('since', '?')}")


def read_holder(path: str) -> dict | None:
  """The holder recorded in a lock file; {} when it is unreadable (being written, or cut
  short by a crash), None when there is no lock."""
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    return {}


def why_stale(path: str, holder: dict, now: float | None = None) -> str | None:
  """Why the lock's holder is gone, or None when it may still be training."""
  try:
    renewed = os.stat(path).st_mtime
  except FileNotFoundError:
    return "it was released"
  quiet = (time.time() if now is None else now) - renewed
  me = _me()
  if holder and holder.get("host") == me["host"] and holder.get("boot_id") == me["boot_id"]:
    pid = int(holder.get("pid", -1))
    if not _alive(pid):
      return f"pid {pid} is not running"
    started = _start_time(pid)
    if started and holder.get("start_time") and started != holder["start_time"]:
      return f"pid {pid} is another process now"
    return None
  if quiet > STALE_S:
    return f"it was not renewed for {quiet / 60:.0f} min (its holder renews it every {RENEW_S:.0f} s)"
  return None


def holder_if_held(run_dir: str) -> dict | None:
  """Who holds the run's lock now, or None when nobody does (or its holder is gone)."""
  path = os.path.join(run_dir, LOCK_NAME)
  found = read_holder(path)
  if found is None or (found and why_stale(path, found) is not None):
    return None
  return found


class RunLock:
  """The run's lock, held by this process; `release()` (also at exit) removes it."""

  def __init__(self, path: str, holder: dict):
    self.path, self.holder = path, holder
    self._stop = threading.Event()
    self._renewer = threading.Thread(target=self._renew, name="fjft-run-lock", daemon=True)
    self._renewer.start()
    atexit.register(self.release)

  def _renew(self) -> None:
    while not self._stop.wait(RENEW_S):
      try:
        os.utime(self.path)
      except OSError:   # gone (released, or the run dir removed): nothing to renew
        return

  def release(self) -> None:
    if self._stop.is_set():
      return
    self._stop.set()
    atexit.unregister(self.release)
    if read_holder(self.path) == self.holder:   # never remove a lock another process took
      try:
        os.remove(self.path)
      except FileNotFoundError:
        pass

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()


class _NotHeld:
  """What the other processes of a multi-host job hold: process 0 holds the job's lock."""

  def release(self) -> None:
    pass

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    pass


def acquire(run_dir: str, say=print) -> RunLock:
  """Takes <run_dir>/train.lock, or raises RunBusyError naming its holder."""
  os.makedirs(run_dir, exist_ok=True)
  path = os.path.join(run_dir, LOCK_NAME)
  for _ in range(3):   # a stale lock taken over, or a race with another process taking it
    holder = _me()
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      found = read_holder(path)
      if found is None:
        continue   # released just now
      if found == {} and time.time() - _mtime(path) < RENEW_S:
        time.sleep(0.5)   # being written by the process taking it
        continue
      stale = why_stale(path, found)
      if stale is None:
        raise RunBusyError(
            f"run {run_dir} is being trained by another process ({describe_holder(found)}; "
            f"lock {path}). Wait for it to finish (its results.json), or stop it; running the "
            "same command again afterwards resumes from its last checkpoint.") from None
      if _take_over(path, found):
        say(f"run {run_dir}: its lock was held by a process that is gone "
            f"({describe_holder(found)}: {stale}); taking it over")
      continue
    with os.fdopen(fd, "w") as f:
      json.dump(holder, f)
    return RunLock(path, holder)
  raise RunBusyError(f"run {run_dir}: could not take its lock {path}: other processes keep "
                     "taking it; is the same command running several times?")


def _mtime(path: str) -> float:
  try:
    return os.stat(path).st_mtime
  except FileNotFoundError:
    return 0.0


def _take_over(path: str, found: dict) -> bool:
  """Moves the stale lock aside (rename is atomic: of two processes taking it over, one
  wins) and removes it; False when another process got there first."""
  aside = f"{path}.stale-{os.getpid()}"
  try:
    os.rename(path, aside)
  except FileNotFoundError:
    return False
  if read_holder(aside) != found:
    # Another process took the stale lock over first and holds it now: put its lock back.
    try:
      os.link(aside, path)
    except FileExistsError:
      pass
    os.remove(aside)
    return False
  os.remove(aside)
  return True


def acquire_for_job(run_dir: str, say=print):
  """The job's lock: taken by process 0 and shared as one outcome with every process, so
  that the job stops as a whole when another one holds the run."""
  import jax
  if jax.process_count() == 1:
    return acquire(run_dir, say)
  from jax.experimental import multihost_utils
  lock, error = None, None
  if jax.process_index() == 0:
    try:
      lock = acquire(run_dir, say)
    except RunBusyError as e:
      error = e
  taken = multihost_utils.broadcast_one_to_all(np.int32(error is None))
  if error is not None:
    raise error
  if not int(taken):
    raise RunBusyError(f"run {run_dir} is being trained by another job (process 0 of this "
                       "job found its lock held and says by whom)")
  return lock if lock is not None else _NotHeld()
