"""Checkpoints that are there but do not restore (truncated by a full disk or a copy cut
short, or overwritten): the run resumes from the newest one that does, saying which was
unreadable and why; only when none restores does it stop, naming each."""

import os
import shutil

import pytest

from fjft.config import identity
from fjft.errors import CheckpointError
from fjft.run import opened, runner
from tests.faults import helpers


def _truncate(checkpoint_dir: str) -> None:
  """Every file of the checkpoint cut to half its size, as a copy cut short leaves it."""
  for root, _, files in os.walk(checkpoint_dir):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


@pytest.fixture
def unfinished_copy(finished_run, tmp_path):
  """A copy of the finished run's dir without results.json: a run to resume."""
  config, workdir, results, _ = finished_run
  name = identity.run_name(config)
  shutil.copytree(os.path.join(workdir, name), tmp_path / name)
  os.remove(tmp_path / name / "results.json")
  return config, str(tmp_path), str(tmp_path / name), os.path.join(workdir, name), results


def test_resume_falls_back_past_an_unreadable_last_checkpoint(unfinished_copy):
  config, workdir, run_dir, reference_dir, results = unfinished_copy
  last = os.path.join(run_dir, "checkpoints", "last")
  assert helpers.steps(last) == [10, 12]
  _truncate(os.path.join(last, "12"))
  said = []
  runner.run(config, workdir, say=said.append)
  text = "\n".join(said)
  assert f"checkpoint {last}/12 is unreadable (" in text, text
  assert "resuming from the checkpoint at step 10" in text
  # kept for inspection, out of the way of the save that replaced it
  assert os.listdir(os.path.join(run_dir, "checkpoints", "unreadable"))[0].startswith("last-12-")
  helpers.assert_same_run(run_dir, reference_dir, results)


def test_no_last_checkpoint_restores_stops_naming_each(unfinished_copy):
  config, workdir, run_dir, *_ = unfinished_copy
  last = os.path.join(run_dir, "checkpoints", "last")
  for step in helpers.steps(last):
    _truncate(os.path.join(last, str(step)))
  with pytest.raises(CheckpointError) as e:
    runner.run(config, workdir, say=lambda _: None)
  message = str(e.value)
  assert f"{last}/12: " in message and f"{last}/10: " in message and "--rerun" in message
  assert not os.path.exists(os.path.join(run_dir, "train.lock"))   # released on the way out


def test_an_unreadable_best_checkpoint_falls_back_or_is_named(unfinished_copy, capsys):
  """Opening a finished run: the newest best that restores, the unreadable one said (and
  left in place: using a run changes nothing in it); none readable is an error naming it."""
  config, workdir, run_dir, reference_dir, results = unfinished_copy
  best = os.path.join(run_dir, "checkpoints", "best")
  newest = helpers.steps(best)[-1]
  assert newest == results["best_step"]
  shutil.copy(os.path.join(reference_dir, "results.json"), run_dir)
  # the best before it (two are kept): a copy of the newest under an earlier step
  shutil.copytree(os.path.join(best, str(newest)), os.path.join(best, "1"))
  kept = helpers.steps(best)
  _truncate(os.path.join(best, str(newest)))
  run = opened.open_run(run_dir, "predict")
  assert run.best_step == 1
  assert f"best checkpoint {best}/{newest} is unreadable (" in capsys.readouterr().err
  _truncate(os.path.join(best, "1"))
  with pytest.raises(CheckpointError, match=rf"no best checkpoint of {best} restores"):
    opened.open_run(run_dir, "predict")
  assert helpers.steps(best) == kept
