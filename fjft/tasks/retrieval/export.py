"""A search run exported: a sentence-transformers folder, or (a LoRA run) its adapter in
the PEFT format."""

from __future__ import annotations

import json
import os

from fjft.models import registry
from fjft.run import opened
from fjft.tasks import peft_export
from fjft.weights.hf_dir import write_hf_dir

# transformers' bare encoder class for each family (what sentence-transformers loads).
HF_ENCODER = {"bert": "BertModel", "roberta": "RobertaModel", "xlm-roberta": "XLMRobertaModel",
              "distilbert": "DistilBertModel", "electra": "ElectraModel"}
HF_ENCODER.update({"deberta-v2": "DebertaV2Model", "modernbert": "ModernBertModel"})


def export_sentence_transformers(run_dir: str, out_dir: str) -> str:
  """Writes the HF encoder (config.json, model.safetensors, tokenizer files) plus
  modules.json, the pooling config and, when the run normalises, a Normalize module."""
  run = opened.open_run(run_dir)
  info = run.info
  family = registry.family_module(info["family"])
  cfg = family.Config.from_hf(info["hf_config"])
  tensors = family.to_hf_state_dict(cfg, run.params["encoder"])
  write_hf_dir(out_dir, dict(info["hf_config"], architectures=[HF_ENCODER[info["family"]]]),
               tensors)
  run.tokenizer.save(out_dir)
  modules = [
      {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
      {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
  ]
  if info["normalize"]:
    modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize"})
    os.makedirs(os.path.join(out_dir, "2_Normalize"), exist_ok=True)
  os.makedirs(os.path.join(out_dir, "1_Pooling"), exist_ok=True)
  pooling = {"word_embedding_dimension": cfg.hidden_size,
             "pooling_mode_cls_token": info["pooling"] == "cls",
             "pooling_mode_mean_tokens": info["pooling"] == "mean",
             "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}
  files = {"modules.json": modules, "1_Pooling/config.json": pooling,
           # documents were embedded at this length in training and evaluation
           "sentence_bert_config.json": {"max_seq_length": info["doc_max_length"],
                                         "do_lower_case": False}}
  for name, value in files.items():
    with open(os.path.join(out_dir, name), "w") as f:
      json.dump(value, f, indent=2)
  return (f"wrote a sentence-transformers model to {out_dir}: "
          f"sentence_transformers.SentenceTransformer({out_dir!r})")


def export_peft(run_dir: str, out_dir: str) -> str:
  """Writes a LoRA run's adapter in the PEFT format (task type FEATURE_EXTRACTION)."""
  return peft_export.export_encoder_adapter(run_dir, out_dir, "FEATURE_EXTRACTION",
                                            prefixed=False)
