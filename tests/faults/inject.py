"""`python -m fjft.train` with one fault injected: `python tests/faults/inject.py <fault>
<step> <train flags...>`. The faults are the ones a run meets in the wild, at the worst
moment; the process dies as it would (SIGKILL: no handler, no finally, no atexit).

  kill-save     SIGKILL while the last-checkpoint save of <step> is being written
  kill-best     SIGKILL while the best-checkpoint save of <step> is being written
  kill-eval     SIGKILL as the dev evaluation of <step> starts
  kill-results  SIGKILL with half of results.json written
  enospc-results  results.json's write fails with ENOSPC (a full disk), as open() would
"""

import errno
import os
import signal
import sys
import threading
import time

FAULT, STEP = sys.argv[1], int(sys.argv[2])
sys.argv = [sys.argv[0], *sys.argv[3:]]
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from absl import app  # noqa: E402

from fjft import cli, train  # noqa: E402  (train defines the flags)
from fjft.run import rundir, runner  # noqa: E402
from fjft.training import checkpoint  # noqa: E402


def _die():
  print(f"inject: {FAULT} at step {STEP}", flush=True)
  os.kill(os.getpid(), signal.SIGKILL)


def _kill_mid_save(method: str, folder_attr: str):
  """SIGKILL once the save of STEP has its temporary folder (its files being written)."""
  original = getattr(checkpoint.RunCheckpoints, method)

  def save(self, step, *args):
    if step != STEP:
      return original(self, step, *args)
    folder = getattr(self, folder_attr)
    threading.Thread(target=original, args=(self, step, *args), daemon=True).start()
    deadline = time.time() + 30
    while time.time() < deadline:
      if any(n.startswith(f"{step}.") for n in os.listdir(folder)):
        _die()
      time.sleep(0.0005)
    raise AssertionError(f"no save of step {step} started in {folder}")

  setattr(checkpoint.RunCheckpoints, method, save)


if FAULT == "kill-save":
  _kill_mid_save("save", "last_dir")
elif FAULT == "kill-best":
  _kill_mid_save("save_best", "best_dir")
elif FAULT == "kill-eval":
  loop = runner.train_loop

  def train_loop(**kw):
    evaluate = kw["evaluate"]
    kw["evaluate"] = lambda p, step: _die() if step == STEP else evaluate(p, step)
    return loop(**kw)

  runner.train_loop = train_loop
elif FAULT in ("kill-results", "enospc-results"):
  write = rundir.write_json

  def write_json(path, obj):
    if not path.endswith("results.json"):
      return write(path, obj)
    if FAULT == "enospc-results":
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path + ".tmp")
    with open(path + ".tmp", "w") as f:   # what write_json writes first
      f.write('{"config_hash": "')
      f.flush()
      os.fsync(f.fileno())
    _die()

  rundir.write_json = write_json
else:
  raise SystemExit(f"unknown fault {FAULT!r}")

app.run(train.main, flags_parser=cli.flags_parser)
