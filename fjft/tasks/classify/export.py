"""A classification run exported: an HF *ForSequenceClassification directory, or (a LoRA
run) its adapter and head in the PEFT format."""

from __future__ import annotations

import numpy as np
from flax import nnx

from fjft.errors import FjftError
from fjft.models import registry
from fjft.run import opened
from fjft.tasks import peft_export
from fjft.weights.hf_dir import write_hf_dir

# transformers' class for a classification head on each encoder family.
HF_CLASSIFIER = {"bert": "BertForSequenceClassification",
                 "roberta": "RobertaForSequenceClassification",
                 "xlm-roberta": "XLMRobertaForSequenceClassification",
                 "distilbert": "DistilBertForSequenceClassification",
                 "electra": "ElectraForSequenceClassification"}
HF_CLASSIFIER["deberta-v2"] = "DebertaV2ForSequenceClassification"
HF_CLASSIFIER["modernbert"] = "ModernBertForSequenceClassification"

# model_type -> (HF name of the head's dense layer before the classifier, or None; HF name
# of the classifier). BERT's dense layer is the encoder's pooler (exported with it);
# RoBERTa's head (classifier.dense + tanh + classifier.out_proj on <s>) is the same math,
# so the encoder's pooler is written as classifier.dense; DistilBERT's and ELECTRA's
# dense layer is the Classifier's pre_classifier (fjft.tasks.classify.model.DENSE_HEADS).
HF_HEAD_NAMES = {"bert": (None, "classifier"),
                 "roberta": ("classifier.dense", "classifier.out_proj"),
                 "xlm-roberta": ("classifier.dense", "classifier.out_proj"),
                 "distilbert": ("pre_classifier", "classifier"),
                 "electra": ("classifier.dense", "classifier.out_proj")}
HF_HEAD_NAMES["deberta-v2"] = ("pooler.dense", "classifier")   # its ContextPooler
# ModernBertPredictionHead (head.dense, head.norm) on the [CLS] state or the mean
HF_HEAD_NAMES["modernbert"] = ("head.dense", "classifier")
# HF config value of classifier_pooling for fjft's model.pooling, for families whose HF
# head reads either (ModernBERT); the others read the [CLS] token through the pooler only.
HF_POOLING = {"modernbert": {"pooler": "cls", "mean": "mean"}}


def _linear(params, name: str) -> dict:
  out = {f"{name}.weight": np.ascontiguousarray(np.asarray(params["kernel"][...]).T)}
  if params.get("bias") is not None:
    out[f"{name}.bias"] = np.asarray(params["bias"][...])
  return out


def _norm(params, name: str) -> dict:
  out = {f"{name}.weight": np.asarray(params["scale"][...])}
  if params.get("bias") is not None:
    out[f"{name}.bias"] = np.asarray(params["bias"][...])
  return out


def head_tensors(model_type: str, params, tensors: dict) -> dict:
  """The HF-named tensors of the classification head of `params` (the Classifier's state
  or pure dict); `tensors` (the encoder's, HF-named) loses a pooler that HF's head holds."""
  dense, classifier = HF_HEAD_NAMES.get(model_type, (None, "classifier"))
  out = _linear(params["classifier"], classifier)
  if dense is not None and "pre_classifier" in params:
    out.update(_linear(params["pre_classifier"], dense))
    if "pre_classifier_norm" in params:   # ModernBERT's head.norm beside head.dense
      out.update(_norm(params["pre_classifier_norm"], dense.rsplit(".", 1)[0] + ".norm"))
  elif dense is not None:   # the encoder's pooler is HF's head's dense layer
    for part in ("weight", "bias"):
      name = next(k for k in tensors if k.endswith(f"pooler.dense.{part}"))
      out[f"{dense}.{part}"] = tensors.pop(name)
  return out


def check_hf_head(run_dir: str, info: dict) -> None:
  """HF's *ForSequenceClassification reads the [CLS] token through the pooler (ModernBERT's
  reads it or the mean): a run that pooled otherwise would export to a model that predicts
  differently, so it does not."""
  pooling = info.get("pooling", "pooler")
  if pooling not in HF_POOLING.get(info["hf_config"].get("model_type"), {"pooler": None}):
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
  tensors.update(head_tensors(cfg.to_hf()["model_type"], run.params, tensors))
  labels = run.info["labels"]
  hf_config = dict(run.info["hf_config"], architectures=[HF_CLASSIFIER[family_name]],
                   id2label={str(i): l for i, l in enumerate(labels)},
                   label2id={l: i for i, l in enumerate(labels)},
                   problem_type="single_label_classification")
  if family_name in HF_POOLING:
    hf_config["classifier_pooling"] = HF_POOLING[family_name][run.info.get("pooling", "pooler")]
  write_hf_dir(out_dir, hf_config, tensors)
  run.tokenizer.save(out_dir)
  return (f"wrote a Hugging Face model to {out_dir}: "
          f"transformers.AutoModelForSequenceClassification.from_pretrained({out_dir!r})")


def export_peft(run_dir: str, out_dir: str) -> str:
  """Writes a LoRA run's adapter and its new head (modules_to_save) in the PEFT format."""
  info = opened.read_info(run_dir)
  check_hf_head(run_dir, info)
  model_type = info["hf_config"].get("model_type")

  def head(model):
    state = nnx.state(model)
    encoder = state["encoder"]
    pooler = _linear(encoder["pooler"], "pooler.dense") if "pooler" in encoder else {}
    return head_tensors(model_type, state, pooler)

  return peft_export.export_encoder_adapter(run_dir, out_dir, "SEQ_CLS", prefixed=True,
                                            head=head)
