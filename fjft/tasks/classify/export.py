"""A classification run exported: an HF *ForSequenceClassification directory, or (a LoRA
run) its adapter and head in the PEFT format."""

from __future__ import annotations

import numpy as np
from fjft.errors import FjftError
from fjft.models import registry
from fjft.run import opened
from fjft.tasks import peft_export
from fjft.weights.hf_dir import write_hf_dir

# transformers' class for a classification head on each encoder family.
HF_CLASSIFIER = {"bert": "BertForSequenceClassification",
                 "roberta": "RobertaForSequenceClassification"}


def check_hf_head(run_dir: str, info: dict) -> None:
  """HF's *ForSequenceClassification reads the [CLS] token through the pooler: a run that
  pooled otherwise would export to a model that predicts differently, so it does not."""
  pooling = info.get("pooling", "pooler")
  if pooling != "pooler":
    raise FjftError(f"--run: {run_dir} classifies {pooling}-pooled encoder outputs, and "
                    "transformers' sequence-classification head reads the [CLS] token through "
                    "the pooler, so an export would predict differently. Use the run directory "
                    "with fjft (predict), or train with model.pooling='pooler' to export.")


def export_hf(run_dir: str, out_dir: str) -> str:
  """Writes <out_dir>/config.json, model.safetensors and tokenizer files."""
  check_hf_head(run_dir, opened.read_info(run_dir))   # before the checkpoint is read
  run = opened.open_run(run_dir)
  family_name = run.info["family"]
  if family_name not in HF_CLASSIFIER:
    raise FjftError(f"export: no Hugging Face classifier class known for family {family_name!r}")
  family = registry.family_module(family_name)
  cfg = family.Config.from_hf(run.info["hf_config"])
  tensors = family.to_hf_state_dict(cfg, run.params["encoder"])
  head = run.params["classifier"]
  tensors["classifier.weight"] = np.ascontiguousarray(np.asarray(head["kernel"][...]).T)
  tensors["classifier.bias"] = np.asarray(head["bias"][...])
  labels = run.info["labels"]
  hf_config = dict(run.info["hf_config"], architectures=[HF_CLASSIFIER[family_name]],
                   id2label={str(i): l for i, l in enumerate(labels)},
                   label2id={l: i for i, l in enumerate(labels)},
                   problem_type="single_label_classification")
  write_hf_dir(out_dir, hf_config, tensors)
  run.tokenizer.save(out_dir)
  return (f"wrote a Hugging Face model to {out_dir}: "
          f"transformers.AutoModelForSequenceClassification.from_pretrained({out_dir!r})")


def export_peft(run_dir: str, out_dir: str) -> str:
  """Writes a LoRA run's adapter and its new head (modules_to_save) in the PEFT format."""
  check_hf_head(run_dir, opened.read_info(run_dir))
  return peft_export.export_encoder_adapter(
      run_dir, out_dir, "SEQ_CLS", prefixed=True,
      head=lambda model: {"classifier.weight": np.asarray(model.classifier.kernel[...]).T,
                          "classifier.bias": np.asarray(model.classifier.bias[...])})
