"""A full disk mid-run, on a size-limited file system (tmpfs; where this platform cannot
mount one, test_kills' write hook raising ENOSPC stands in): the run stops with one error
naming the checkpoint it could not write, keeps every complete checkpoint, writes no
results.json, and once there is room the same command resumes it to the very same end."""

import os
import subprocess

import pytest

from fjft.config import identity
from tests.conftest import REPO, cli_args
from tests.faults import helpers

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
  """A 14 MiB tmpfs: room for the run's files (0.7 MiB), the best checkpoint (3.7 MiB) and
  two last checkpoints (4 MiB each, compressed), not for the third that a save writes
  before it drops the oldest."""
  disk = tmp_path / "disk"
  disk.mkdir()
  if os.geteuid() != 0:
    pytest.skip("mounting a tmpfs needs root")
  mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=14m", "tmpfs", str(disk)],
                         capture_output=True, text=True)
  if mount.returncode:
    pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
  try:
    yield disk
  finally:
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_stops_the_run_with_one_line_and_it_resumes(finished_run, tiny_bert_dir,
                                                                small_disk):
  config, workdir, results, _ = finished_run
  cmd = cli_args(tiny_bert_dir, str(small_disk))
  run_dir = os.path.join(str(small_disk), identity.run_name(config))
  full = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert full.returncode == 2, full.stdout + full.stderr
  assert "Traceback" not in full.stdout + full.stderr
  errors = [l for l in full.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, full.stderr
  assert "No space left on device" in errors[0] and "cannot write" in errors[0], errors[0]
  assert not os.path.exists(os.path.join(run_dir, "results.json"))
  assert not os.path.exists(os.path.join(run_dir, "train.lock"))
  kept = helpers.steps(os.path.join(run_dir, "checkpoints", "last"))
  assert kept and kept[-1] < results["step"], kept
  # no partial checkpoint folder left taking the space
  last = os.path.join(run_dir, "checkpoints", "last")
  assert [n for n in os.listdir(last) if not n.isdigit()] == [], os.listdir(last)

  subprocess.run(["mount", "-o", "remount,size=200m", str(small_disk)], check=True)
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout + done.stderr
  assert f"resuming from the checkpoint at step {kept[-1]}" in done.stdout
  helpers.assert_same_run(run_dir, os.path.join(workdir, identity.run_name(config)), results)
