"""fjft.reproduce: a finished run re-run from its config.json matches bit for bit; changed
data is listed as an environment difference and the re-run reports a mismatch."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from fjft.config import experiment as config_lib
from fjft.config import identity
from fjft.run import reproduce
from fjft.run import runner
from fjft.errors import FjftError
from tests.conftest import REPO

QUICKSTART = os.path.join(REPO, "experiments", "quickstart.py")


@pytest.fixture(scope="module")
def original(tiny_bert_dir, tmp_path_factory):
  root = tmp_path_factory.mktemp("repro")
  data = root / "data"
  shutil.copytree(os.path.join(REPO, "experiments", "data", "quickstart"), data)
  config = config_lib.load_config(QUICKSTART, [
      ("model.name", tiny_bert_dir), ("data.path", str(data)), ("train.steps", "8"),
      ("train.batch_size", "8"), ("train.eval_every", "4"), ("train.checkpoint_every", "4"),
      ("train.eval_batch_size", "64"), ("train.progress", "false"), ("optim.lr", "1e-3")])
  workdir = root / "runs"
  runner.run(config, str(workdir), say=lambda s: None)
  return config, workdir, data


@pytest.mark.slow
def test_reproduces_bit_identically_by_hash(original):
  config, workdir, _ = original
  lines = []
  h = identity.config_hash(config)
  assert reproduce.reproduce(h[:12], str(workdir), say=lines.append)
  out = "\n".join(lines)
  # Only the git lines may differ (this checkout may have uncommitted changes).
  listed = lines[lines.index("environment differences:") + 1:] \
      if "environment differences:" in lines else []
  listed = listed[:next((i for i, l in enumerate(listed) if l.startswith("expecting")), 0)]
  diffs = [l for l in listed if not l.startswith("  git")]
  assert not diffs, diffs
  assert "MATCH (bit-identical" in out
  repro_dir = os.path.join(workdir, "reproductions", identity.run_name(config))
  report = json.load(open(os.path.join(repro_dir, "reproduce.json")))
  assert report["match"] and report["exact_expected"] and report["max_param_rel_l2"] == 0.0
  # the full hash finds the original, never the reproduction beside it
  assert reproduce.find_run(h, str(workdir)) == str(workdir / identity.run_name(config))


@pytest.mark.slow
def test_changed_data_is_listed_and_mismatches(original):
  config, workdir, data = original
  run_dir = str(workdir / identity.run_name(config))
  train = data / "train.jsonl"
  saved = train.read_text()
  rows = saved.splitlines()
  try:
    train.write_text("\n".join(rows[: len(rows) // 2]) + "\n")   # half the training data
    result = subprocess.run([sys.executable, "-m", "fjft.reproduce", f"--run={run_dir}",
                             f"--workdir={workdir}"], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
  finally:
    train.write_text(saved)
  out = result.stdout + result.stderr
  assert result.returncode == 1, out
  assert "data file train.jsonl: contents changed" in out
  assert "MISMATCH" in out


def test_env_differences_lists_each_change():
  before = {"python": "3.11.7", "packages": {"jax": "0.10.2", "flax": "0.12.8"},
            "devices": {"kind": "cpu", "count": 1}, "git": {"commit": "a", "dirty": False},
            "data_files": {"/x/train.jsonl": "aa", "/x/dev.jsonl": "bb"}}
  now = {"python": "3.12.1", "packages": {"jax": "0.11.2", "flax": "0.12.8"},
         "devices": {"kind": "NVIDIA H100", "count": 1}, "git": {"commit": "b", "dirty": True},
         "data_files": {"/y/train.jsonl": "aa", "/y/test.jsonl": "cc"}}
  diffs = "\n".join(reproduce.env_differences(before, now))
  for expected in ("python: 3.11.7 -> 3.12.1", "packages.jax: 0.10.2 -> 0.11.2",
                   "devices.kind: cpu -> NVIDIA H100", "git.commit: a -> b", "git.dirty",
                   "dev.jsonl: missing now", "test.jsonl: new"):
    assert expected in diffs
  assert "flax" not in diffs and "train.jsonl" not in diffs
  assert not reproduce.exact_expected(before, now)
  assert reproduce.exact_expected(before, dict(before, git={"commit": "c"}))


def test_unknown_run_is_a_clear_error(tmp_path):
  with pytest.raises(FjftError, match="no run with hash abcdef"):
    reproduce.find_run("abcdef", str(tmp_path))
  with pytest.raises(FjftError, match="neither a run directory"):
    reproduce.find_run("not-a-run", str(tmp_path))


def _fake_run(root, config: dict, results: str):
  run = root / "fake-000000000000"
  run.mkdir()
  (run / "config.json").write_text(json.dumps(config))
  (run / "results.json").write_text(results)
  return str(run)


def test_a_saved_config_out_of_range_names_its_file(tmp_path):
  d = config_lib.to_dict(config_lib.load_config(QUICKSTART))
  d["train"]["steps"] = "abc"
  run = _fake_run(tmp_path, d, "{}")
  with pytest.raises(FjftError, match=r"fake-000000000000/config.json: config field train.steps "
                     r"must be an integer >= 1 \(got 'abc'\)"):
    reproduce.reproduce(run, str(tmp_path), say=lambda s: None)


def test_a_broken_results_json_is_said_before_anything_trains(tmp_path):
  run = _fake_run(tmp_path, config_lib.to_dict(config_lib.load_config(QUICKSTART)), "{")
  said = []
  with pytest.raises(FjftError, match=r"fake-000000000000/results.json: not valid JSON"):
    reproduce.reproduce(run, str(tmp_path), say=said.append)
  assert not said and not os.path.exists(tmp_path / "reproductions")
