"""The run lock: one holder at a time, said by name; a dead holder's lock taken over."""

import json
import os
import subprocess
import sys
import time

import pytest

from fjft.errors import RunBusyError
from fjft.run import lock as run_lock


def _holder_file(run_dir, **fields):
  os.makedirs(run_dir, exist_ok=True)
  path = os.path.join(run_dir, run_lock.LOCK_NAME)
  holder = dict(run_lock._me(), **fields)
  with open(path, "w") as f:
    json.dump(holder, f)
  return path, holder


def test_one_holder_at_a_time_and_released(tmp_path):
  run_dir = str(tmp_path / "run")
  with run_lock.acquire(run_dir) as held:
    assert run_lock.read_holder(held.path)["pid"] == os.getpid()
    with pytest.raises(RunBusyError, match=rf"run {run_dir} is being trained by another "
                                          rf"process \(pid {os.getpid()} on host "):
      run_lock.acquire(run_dir)
    assert run_lock.holder_if_held(run_dir)["pid"] == os.getpid()
  assert not os.path.exists(held.path) and run_lock.holder_if_held(run_dir) is None
  run_lock.acquire(run_dir).release()   # free again


def test_a_dead_processes_lock_is_taken_over_and_said(tmp_path):
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True).stdout.strip()
  run_dir = str(tmp_path / "run")
  _holder_file(run_dir, pid=int(dead))
  said = []
  with run_lock.acquire(run_dir, say=said.append):
    pass
  assert f"pid {dead} is not running" in said[0] and "taking it over" in said[0]


def test_a_reused_pid_is_not_the_holder(tmp_path):
  # the pid lives (it is this process) but started at another time than the holder did
  run_dir = str(tmp_path / "run")
  path, holder = _holder_file(run_dir, start_time="1")
  if not run_lock._start_time(os.getpid()):
    pytest.skip("no /proc here: a reused pid cannot be told apart")
  assert run_lock.why_stale(path, holder) == f"pid {os.getpid()} is another process now"


def test_another_hosts_lock_is_stale_only_when_not_renewed(tmp_path):
  run_dir = str(tmp_path / "run")
  path, holder = _holder_file(run_dir, host="elsewhere", boot_id="x")
  assert run_lock.why_stale(path, holder) is None
  with pytest.raises(RunBusyError, match="pid .* on host elsewhere"):
    run_lock.acquire(run_dir)
  old = time.time() - run_lock.STALE_S - 60
  os.utime(path, (old, old))
  assert "not renewed for" in run_lock.why_stale(path, holder)
  said = []
  run_lock.acquire(run_dir, say=said.append).release()
  assert "host elsewhere" in said[0]


def test_the_holder_renews_its_lock(tmp_path, monkeypatch):
  monkeypatch.setattr(run_lock, "RENEW_S", 0.05)
  held = run_lock.acquire(str(tmp_path / "run"))
  old = time.time() - 1000
  os.utime(held.path, (old, old))
  time.sleep(0.3)
  assert time.time() - os.stat(held.path).st_mtime < 10
  held.release()


def test_release_leaves_a_lock_another_process_took(tmp_path):
  run_dir = str(tmp_path / "run")
  held = run_lock.acquire(run_dir)
  os.remove(held.path)
  path, other = _holder_file(run_dir, pid=1)   # someone took it meanwhile
  held.release()
  assert run_lock.read_holder(path) == other


def test_a_half_written_lock_of_a_crash_is_taken_over(tmp_path):
  run_dir = str(tmp_path / "run")
  os.makedirs(run_dir)
  path = os.path.join(run_dir, run_lock.LOCK_NAME)
  with open(path, "w") as f:
    f.write('{"host": ')
  old = time.time() - run_lock.STALE_S - 60
  os.utime(path, (old, old))
  said = []
  run_lock.acquire(run_dir, say=said.append).release()
  assert "taking it over" in said[0]
