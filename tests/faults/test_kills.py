"""kill -9 at the worst moments, one after another on one run, then resumed to the end:
the run's results and final params are bit-identical to the run that was never stopped.

One run directory goes through: killed while saving the checkpoint of step 2 (none
complete: the next start begins afresh, taking over the dead process's lock); killed while
saving the best checkpoint of step 4; a second identical command while it trains (refused,
naming the holder); killed as the evaluation of step 8 starts; killed with half of
results.json written; then the same command finishes it.
"""

import os
import signal
import subprocess
import sys

import pytest

from fjft.config import identity
from tests.conftest import REPO, cli_args
from tests.faults import helpers

pytestmark = pytest.mark.slow
INJECT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inject.py")


def _killed(cmd, fault, step, env):
  out = subprocess.run([sys.executable, INJECT, fault, str(step), *cmd[3:]], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
  said = out.stdout + out.stderr
  assert out.returncode == -signal.SIGKILL, said[-3000:]
  assert f"inject: {fault} at step {step}" in said, said[-3000:]
  return said


def test_killed_at_every_stage_then_resumed_is_bit_identical(finished_run, tiny_bert_dir,
                                                             tmp_path):
  config, workdir, results, _ = finished_run
  cmd = cli_args(tiny_bert_dir, str(tmp_path))
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  run_dir = os.path.join(str(tmp_path), identity.run_name(config))
  last, best = (os.path.join(run_dir, "checkpoints", d) for d in ("last", "best"))
  results_file = os.path.join(run_dir, "results.json")

  _killed(cmd, "kill-save", 2, env)
  assert helpers.steps(last) == [] and os.path.isfile(os.path.join(run_dir, "train.lock"))

  said = _killed(cmd, "kill-best", 4, env)
  assert "taking it over" in said and "pid" in said   # the dead process's lock
  assert helpers.steps(last) == [2] and helpers.steps(best) == []

  # A second identical command while this one trains: refused at once, naming the holder.
  proc = subprocess.Popen([sys.executable, INJECT, "kill-eval", "8", *cmd[3:]], cwd=REPO,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  helpers.wait_for(lambda: 4 in helpers.steps(last), proc)
  proc.send_signal(signal.SIGSTOP)
  try:
    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  finally:
    proc.send_signal(signal.SIGCONT)
  assert second.returncode == 75, second.stdout + second.stderr
  assert "Traceback" not in second.stderr
  assert f"is being trained by another process (pid {proc.pid} on host" in second.stderr
  out = proc.communicate(timeout=300)[0]
  assert proc.returncode == -signal.SIGKILL and "inject: kill-eval at step 8" in out, out[-3000:]
  assert "resuming from the checkpoint at step 2" in out
  assert helpers.steps(last) == [4, 6] and helpers.steps(best) == [4]

  _killed(cmd, "kill-results", 12, env)
  assert not os.path.exists(results_file)          # never half a results.json
  assert helpers.steps(last)[-1] == 12

  done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout + done.stderr
  assert "Traceback" not in done.stderr
  assert "resuming from the checkpoint at step 12" in done.stdout
  helpers.assert_same_run(run_dir, os.path.join(workdir, identity.run_name(config)), results)
  assert not os.path.exists(os.path.join(run_dir, "train.lock"))   # released at the end


def test_a_full_disk_at_results_is_one_line_and_the_run_resumes(finished_run, tiny_bert_dir,
                                                               tmp_path):
  """results.json cannot be written (ENOSPC): one error line naming it, no half file; the
  same command afterwards writes it, from the last checkpoint, without training again."""
  config, workdir, results, _ = finished_run
  cmd = cli_args(tiny_bert_dir, str(tmp_path))
  run_dir = os.path.join(str(tmp_path), identity.run_name(config))
  full = subprocess.run([sys.executable, INJECT, "enospc-results", "0", *cmd[3:]], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert full.returncode == 2, full.stdout + full.stderr
  assert "Traceback" not in full.stderr
  errors = [l for l in full.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "results.json.tmp: No space left on device" in errors[0], errors
  assert not os.path.exists(os.path.join(run_dir, "results.json"))
  assert not os.path.exists(os.path.join(run_dir, "train.lock"))
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout + done.stderr
  assert "resuming from the checkpoint at step 12" in done.stdout
  helpers.assert_same_run(run_dir, os.path.join(workdir, identity.run_name(config)), results)
