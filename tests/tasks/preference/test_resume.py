"""A preference run killed -9 as an evaluation starts, then run again, ends bit-identical to
the run that was never stopped: its reference log-probs (precomputed, kept in the run dir)
are read back, not recomputed differently, and training resumes from its checkpoint."""

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from fjft.config import experiment as config_lib
from fjft.config import identity
from fjft.run import runner
from tests.conftest import REPO
from tests.faults import helpers
from tests.tasks.preference.test_train_e2e import _pairs

pytestmark = pytest.mark.slow
INJECT = os.path.join(REPO, "tests", "faults", "inject.py")
# The run's experiment file: the e2e test's tiny full-fine-tune DPO (precomputed reference).
EXPERIMENT = """
from tests.tasks.preference.test_train_e2e import _config


def get_config(arg=None):
  return _config({model!r}, {data!r}, **{{"train.steps": 12, "train.eval_every": 6,
                                         "train.checkpoint_every": 6}})
"""


def test_killed_then_resumed_is_bit_identical(tiny_llama_dir, tmp_path):
  data = tmp_path / "pairs.jsonl"
  _pairs(data, 96)
  experiment = tmp_path / "tiny_dpo.py"
  experiment.write_text(EXPERIMENT.format(model=tiny_llama_dir, data=str(data)))
  config = config_lib.load_config(str(experiment), [])
  reference = runner.run(config, str(tmp_path / "reference"), say=lambda *_: None)

  flags = [f"--config={experiment}", f"--workdir={tmp_path / 'runs'}"]
  env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=REPO)
  killed = subprocess.run([sys.executable, INJECT, "kill-eval", "12", *flags], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
  assert killed.returncode == -signal.SIGKILL, (killed.stdout + killed.stderr)[-3000:]
  run_dir = os.path.join(str(tmp_path / "runs"), identity.run_name(config))
  # killed as step 12's evaluation starts: its checkpoint (written after it) never was
  assert helpers.steps(os.path.join(run_dir, "checkpoints", "last")) == [6]
  done = subprocess.run([sys.executable, "-m", "fjft.train", *flags], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
  assert "resuming from the checkpoint at step 6" in done.stdout

  results = json.load(open(os.path.join(run_dir, "results.json")))
  for key in ("step", "best_step", "dev", "test", "pretrained", "tfidf", "history",
              "train_loss", "reference"):
    assert results[key] == reference[key], key
  cached = [json.load(open(os.path.join(d, "reference_logps.json")))
            for d in (run_dir, reference["run_dir"])]
  assert cached[0]["train"] == cached[1]["train"]
  (step_a, a), (step_b, b) = helpers.last_state(reference["run_dir"]), helpers.last_state(run_dir)
  assert step_a == step_b == 12
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
