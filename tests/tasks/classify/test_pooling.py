"""model.pooling for classification: the HF pooler head (default) or the mean of real tokens."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fjft.config import experiment as config_lib
from fjft.config import identity
from fjft.tasks.classify import use
from fjft.run import opened
from fjft.run import runner
from fjft.errors import ConfigError, FjftError
from fjft.models import bert
from fjft.tasks.classify import model as classify
from tests.conftest import QUICKSTART, REPO, overrides


def _classifier(model_dir, pooling):
  _, encoder = bert.from_hf(model_dir)
  return classify.Classifier(encoder, encoder.cfg.hidden_size, 3, 0.0, rngs=nnx.Rngs(0),
                             pooling=pooling)


def test_mean_pooling_averages_real_tokens_only(tiny_bert_dir):
  model = _classifier(tiny_bert_dir, "mean")
  ids = jnp.asarray([[101, 2054, 2003, 102, 0, 0]])
  mask = jnp.asarray([[1, 1, 1, 1, 0, 0]])
  logits = model(ids, mask)
  hidden, _ = model.encoder(ids, mask)
  expected = model.classifier(hidden[0, :4].mean(0)[None])
  np.testing.assert_allclose(logits, expected, atol=1e-5)
  # the same text without padding gives the same logits: padding is not averaged in
  np.testing.assert_allclose(model(ids[:, :4], mask[:, :4]), logits, atol=1e-5)
  # and it is not the pooler head's answer
  pooler = _classifier(tiny_bert_dir, "pooler")
  assert not np.allclose(pooler(ids, mask), logits, atol=1e-3)


def test_unknown_pooling_names_the_field(tiny_bert_dir):
  with pytest.raises(ConfigError, match="model.pooling"):
    _classifier(tiny_bert_dir, "max")


def test_default_pooling_leaves_run_names_unchanged():
  # Runs made before model.pooling existed keep their names (and so resume).
  config = config_lib.load_config(QUICKSTART)
  assert config.model.pooling == "pooler"
  assert '"pooling"' not in identity.canonical_json(config, identity_only=True)
  mean = config_lib.load_config(QUICKSTART, [("model.pooling", "mean")])
  assert identity.config_hash(mean) != identity.config_hash(config)


@pytest.mark.slow
def test_mean_pooled_run_predicts_and_refuses_an_hf_export(tiny_bert_dir, tmp_path):
  config = config_lib.load_config(QUICKSTART, overrides(tiny_bert_dir) + [("model.pooling", "mean")])
  said = []
  results = runner.run(config, str(tmp_path), say=said.append)
  run_dir = results["run_dir"]
  assert "predict:" in said[-1] and "export:" not in said[-1]   # the summary offers no export
  assert json.load(open(os.path.join(run_dir, "model.json")))["pooling"] == "mean"
  # the restored model scores test as the run did: it pools the way it was trained
  run = opened.open_run(run_dir)
  rows = [json.loads(l) for l in open(os.path.join(REPO, "experiments/data/quickstart/test.jsonl"))]
  probs = use.predict_texts(run, [r["text"] for r in rows])
  labels = run.info["labels"]
  accuracy = np.mean([labels[i] == r["label"] for i, r in zip(probs.argmax(-1), rows)])
  assert accuracy == pytest.approx(results["test"]["accuracy"], abs=1e-9)

  with pytest.raises(FjftError, match="mean-pooled"):
    opened.export(run_dir, "hf", str(tmp_path / "hf"))
  done = subprocess.run([sys.executable, "-m", "fjft.export", f"--run={run_dir}",
                         f"--out={tmp_path / 'hf'}"], cwd=REPO, capture_output=True, text=True)
  assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
  assert "model.pooling='pooler'" in done.stderr
  assert not os.path.exists(tmp_path / "hf")
