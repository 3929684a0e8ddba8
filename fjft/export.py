"""Export a run's best model as a Hugging Face directory (config, safetensors, tokenizer);
a search embedder as a sentence-transformers folder; a LoRA run either merged (those
formats) or as its adapter alone in the PEFT format (`--format=peft`)."""

from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags
from flax import nnx

from fjft import cli
from fjft.run import opened as infer
from fjft.weights import peft_format
from fjft.run import rundir
from fjft.errors import FjftError, exit_on_user_error
from fjft.models import registry
from fjft.weights.safetensors_io import write_safetensors

# transformers' class for a classification head on each encoder family.
HF_CLASSIFIER = {"bert": "BertForSequenceClassification",
                 "roberta": "RobertaForSequenceClassification"}


def export_hf(run_dir: str, out_dir: str) -> str:
  """Writes <out_dir>/config.json, model.safetensors and tokenizer files; returns out_dir."""
  run = infer.load_run(run_dir)
  _check_hf_head(run_dir, run.info)
  family_name = run.info["family"]
  family = registry.FAMILIES[family_name]
  if family_name not in HF_CLASSIFIER:
    raise FjftError(f"export: no Hugging Face classifier class known for family {family_name!r}")
  cfg = family.Config.from_hf(run.info["hf_config"])
  tensors = family.to_hf_state_dict(cfg, run.params["encoder"])
  head = run.params["classifier"]
  tensors["classifier.weight"] = np.ascontiguousarray(np.asarray(head["kernel"][...]).T)
  tensors["classifier.bias"] = np.asarray(head["bias"][...])
  labels = run.info["labels"]
  hf_config = dict(run.info["hf_config"],
                   architectures=[HF_CLASSIFIER[family_name]],
                   id2label={str(i): l for i, l in enumerate(labels)},
                   label2id={l: i for i, l in enumerate(labels)},
                   problem_type="single_label_classification")
  _write_hf_dir(out_dir, hf_config, tensors)
  run.tokenizer.save(out_dir)
  return out_dir


def _check_hf_head(run_dir: str, info: dict) -> None:
  """HF's *ForSequenceClassification reads the [CLS] token through the pooler: a run that
  pooled otherwise would export to a model that predicts differently, so it does not."""
  pooling = info.get("pooling", "pooler")
  if pooling != "pooler":
    raise FjftError(f"--run: {run_dir} classifies {pooling}-pooled encoder outputs, and "
                    "transformers' sequence-classification head reads the [CLS] token through "
                    "the pooler, so an export would predict differently. Use the run directory "
                    "with fjft (predict), or train with model.pooling='pooler' to export.")


# transformers' bare encoder class for each family (what sentence-transformers loads).
HF_ENCODER = {"bert": "BertModel", "roberta": "RobertaModel"}


def export_sentence_transformers(run_dir: str, out_dir: str) -> str:
  """Writes a retrieval run's best model as a sentence-transformers folder: the HF encoder
  (config.json, model.safetensors, tokenizer files) plus modules.json, the pooling config
  and, when the run normalises, a Normalize module; returns out_dir."""
  run = infer.load_run(run_dir, "retrieval")
  info = run.info
  family = registry.FAMILIES[info["family"]]
  cfg = family.Config.from_hf(info["hf_config"])
  tensors = family.to_hf_state_dict(cfg, run.params["encoder"])
  _write_hf_dir(out_dir, dict(info["hf_config"], architectures=[HF_ENCODER[info["family"]]]),
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
  return out_dir


# transformers' causal-LM class for each decoder model_type.
HF_CAUSAL_LM = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                "qwen2": "Qwen2ForCausalLM", "gpt2": "GPT2LMHeadModel"}


def export_lm_hf(name_or_path: str, out_dir: str, *, run: bool = False) -> str:
  """Writes a decoder as an HF directory for AutoModelForCausalLM: a pretrained one (e.g.
  from GGUF), or with `run` the best checkpoint of a fine-tuned decoder run."""
  from fjft.models import pretrained as lm_lib
  lm = lm_lib.load_run(name_or_path) if run else lm_lib.load_lm(name_or_path)
  hf_config = lm.cfg.to_hf()
  hf_config["architectures"] = [HF_CAUSAL_LM[hf_config["model_type"]]]
  tensors = lm.family.to_hf_state_dict(lm.cfg, nnx.merge(lm.graphdef, lm.params))
  _write_hf_dir(out_dir, hf_config, tensors)
  lm.tokenizer.save(out_dir)
  return out_dir


# PEFT's task_type for each kind of run.
PEFT_TASK_TYPES = {"classify": "SEQ_CLS", "retrieval": "FEATURE_EXTRACTION", "lm": "CAUSAL_LM"}


def export_peft(run_dir: str, out_dir: str) -> str:
  """Writes a LoRA run's adapter (and a classifier's new head) in the PEFT format, for
  peft.PeftModel.from_pretrained on the run's pretrained model; returns out_dir."""
  task = infer.task_of(run_dir)
  if task is None:
    raise FjftError(f"--run: {run_dir} has no model.json: is it an fjft run directory?")
  if task == "lm":
    from fjft.models import pretrained as lm_lib
    lm = lm_lib.load_run(run_dir, merge=False)
    info = rundir.read_json(os.path.join(run_dir, "model.json"))
    model, family, cfg, extra = nnx.merge(lm.graphdef, lm.params), lm.family, lm.cfg, {}
    names, base, tokenizer = family.hf_linear_names(cfg), info["source"], lm.tokenizer
  else:
    run = infer.load_run(run_dir, task, merge=False)
    info, family = run.info, registry.FAMILIES[run.info["family"]]
    cfg = family.Config.from_hf(info["hf_config"])
    whole = nnx.merge(run.graphdef, run.params)
    model, tokenizer = whole.encoder, run.tokenizer
    names = family.hf_linear_names(cfg, prefixed=task == "classify")
    extra = {}
    if task == "classify":
      _check_hf_head(run_dir, info)
      extra = {"classifier.weight": np.asarray(whole.classifier.kernel[...]).T,
               "classifier.bias": np.asarray(whole.classifier.bias[...])}
    base = registry.resolve(run.config["model"]["name"])[1]
  structure = info.get("peft_structure")
  if not structure:
    raise FjftError(f"--run: {run_dir} is a full fine-tuning run, not a LoRA run: it has no "
                    "adapter; export it without --format=peft")
  peft_format.write_adapter(out_dir, model, family, names, structure,
                            task_type=PEFT_TASK_TYPES[task], base_model=base, extra=extra)
  tokenizer.save(out_dir)
  return out_dir


def _write_hf_dir(out_dir: str, hf_config: dict, tensors: dict) -> None:
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(hf_config, f, indent=2)
  write_safetensors({k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in tensors.items()},
                    os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})


def define_flags():
  # Defined only when run as a main, so importing export_hf defines no flags.
  flags.DEFINE_string("run", None, "Run directory (a fine-tuned classifier, decoder or search "
                      "embedder).")
  flags.DEFINE_string("model", None, "A pretrained decoder: registered name, .gguf file or HF "
                      "folder (e.g. a GGUF converted to the HF format).")
  flags.DEFINE_string("out", None, "Output folder for the Hugging Face model.", required=True)
  flags.DEFINE_enum("format", "hf", ["hf", "peft"], "hf: the whole model (a LoRA run's "
                    "adapters merged in); peft: a LoRA run's adapter alone, for "
                    "peft.PeftModel.from_pretrained.")


@exit_on_user_error
def main(argv):
  cli.begin(argv)
  f = flags.FLAGS
  if bool(f.run) == bool(f.model):
    raise FjftError("pass exactly one of --run (a run directory) or --model (a pretrained decoder)")
  if f.model:
    out = export_lm_hf(f.model, f.out)
    print(f"wrote a Hugging Face model to {out}: "
          f"transformers.AutoModelForCausalLM.from_pretrained({out!r})")
    return
  if f.format == "peft":
    out = export_peft(f.run, f.out)
    base = rundir.read_json(os.path.join(out, "adapter_config.json"))
    print(f"wrote a PEFT LoRA adapter to {out}: peft.PeftModel.from_pretrained(<the "
          f"transformers model of {base['base_model_name_or_path']}>, {out!r})")
    return
  if infer.task_of(f.run) == "retrieval":
    out = export_sentence_transformers(f.run, f.out)
    print(f"wrote a sentence-transformers model to {out}: "
          f"sentence_transformers.SentenceTransformer({out!r})")
    return
  if infer.is_lm_run(f.run):
    out = export_lm_hf(f.run, f.out, run=True)
    print(f"wrote a Hugging Face model to {out}: "
          f"transformers.AutoModelForCausalLM.from_pretrained({out!r})")
    return
  out = export_hf(f.run, f.out)
  print(f"wrote a Hugging Face model to {out}: "
        f"transformers.AutoModelForSequenceClassification.from_pretrained({out!r})")


if __name__ == "__main__":
  define_flags()
  app.run(main)
