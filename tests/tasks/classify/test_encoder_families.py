"""A classification run end to end on a tiny random XLM-RoBERTa, DistilBERT, ELECTRA,
DeBERTa-v3 and ModernBERT (mean-pooled), and its export loading into the family's
*ForSequenceClassification with fjft's logits."""

import os

import numpy as np
import pytest

from fjft.config import experiment as config_lib
from fjft.config import identity
from fjft.run import opened, runner
from fjft.tasks.classify import export, use
from tests.conftest import QUICKSTART, overrides
from tests.tasks.encoder_dirs import FAMILIES, MEAN_POOLED, tiny_encoder_dir

pytestmark = pytest.mark.slow   # a run per family, ~15 s each

TEXTS = ["where is my parcel, it has been two weeks", "please cancel order 5512",
         "I was charged twice"]
# 4 steps, one evaluation and one checkpoint: the run, not the training, is under test
SHORT = {"train.steps": "4", "train.eval_every": "4", "train.checkpoint_every": "4"}


@pytest.fixture(scope="module", params=FAMILIES)
def classify_run(request, tmp_path_factory):
  model_type = request.param
  model_dir = tiny_encoder_dir(model_type, tmp_path_factory.mktemp(model_type))
  workdir = str(tmp_path_factory.mktemp("runs"))
  config = config_lib.load_config(
      QUICKSTART, [(k, SHORT.get(k, v)) for k, v in overrides(model_dir)]
      + ([("model.pooling", "mean")] if model_type in MEAN_POOLED else []))
  results = runner.run(config, workdir, say=lambda s: None)
  return model_type, os.path.join(workdir, identity.run_name(config)), results


def test_run_finishes(classify_run):
  model_type, run_dir, results = classify_run
  assert results["step"] == 4
  assert set(results["dev"]) == {"accuracy", "macro_f1"}
  assert opened.read_info(run_dir)["family"] == model_type


def test_export_has_the_same_logits(classify_run, tmp_path):
  transformers = pytest.importorskip("transformers")
  torch = pytest.importorskip("torch")
  model_type, run_dir, _ = classify_run
  hf_dir = str(tmp_path / "hf")
  opened.export(run_dir, "hf", hf_dir)
  model, loading = transformers.AutoModelForSequenceClassification.from_pretrained(
      hf_dir, output_loading_info=True)
  model.eval()
  # HF's head is fjft's: every tensor of the HF model is in the export, and only those
  assert not loading["missing_keys"] and not loading["unexpected_keys"], loading
  assert type(model).__name__ == export.HF_CLASSIFIER[model_type]
  tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
  run = opened.open_run(run_dir)
  ours = use.logits_texts(run, TEXTS)
  batch = tok(TEXTS, padding=True, return_tensors="pt")
  if model_type == "distilbert":
    batch.pop("token_type_ids")
  with torch.no_grad():
    theirs = model(**batch).logits.numpy()
  assert np.abs(ours - theirs).max() < 1e-4, np.abs(ours - theirs).max()


@pytest.mark.parametrize("model_type", FAMILIES)
def test_lora_run_exports_a_peft_adapter_with_the_same_logits(model_type, tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  peft = pytest.importorskip("peft")
  model_dir = tiny_encoder_dir(model_type, tmp_path / "model")
  lora = {**SHORT, "peft.method": "lora", "peft.rank": "4", "optim.lr": "5e-3"}
  config = config_lib.load_config(
      QUICKSTART, [(k, lora.get(k, v)) for k, v in overrides(model_dir)]
      + [(k, v) for k, v in lora.items() if k.startswith("peft.")])
  runner.run(config, str(tmp_path / "runs"), say=lambda s: None)
  run_dir = os.path.join(str(tmp_path / "runs"), identity.run_name(config))
  ours = use.logits_texts(opened.open_run(run_dir), TEXTS)
  opened.export(run_dir, "peft", str(tmp_path / "peft"))
  base = transformers.AutoModelForSequenceClassification.from_pretrained(
      model_dir, num_labels=ours.shape[1], dtype=torch.float32)
  adapted = peft.PeftModel.from_pretrained(base, str(tmp_path / "peft")).eval()
  tok = transformers.AutoTokenizer.from_pretrained(model_dir)
  batch = tok(TEXTS, padding=True, return_tensors="pt")
  if model_type == "distilbert":
    batch.pop("token_type_ids")
  with torch.no_grad():
    theirs = adapted(**batch).logits.numpy()
  assert np.abs(ours - theirs).max() < 1e-4, np.abs(ours - theirs).max()
