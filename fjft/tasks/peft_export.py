"""A LoRA run's adapter written in the PEFT format: what every task's `--format=peft` export
shares, and the whole export of an encoder task's run."""

from __future__ import annotations

from flax import nnx

from fjft.errors import FjftError
from fjft.models import registry
from fjft.weights import peft_format


def check_is_lora(run_dir: str, info: dict) -> None:
  if not info.get("peft_structure"):
    raise FjftError(f"--run: {run_dir} is a full fine-tuning run, not a LoRA run: it has no "
                    "adapter; export it without --format=peft")


def export_adapter(out_dir: str, model, family, names: dict, structure: dict, task_type: str,
                   base_model: str, tokenizer, extra: dict | None = None) -> str:
  """Writes the adapters of `model` (the pretrained part, HF-named by `names`), `extra`
  tensors (a new head) and the tokenizer; returns the line to print."""
  peft_format.write_adapter(out_dir, model, family, names, structure, task_type=task_type,
                            base_model=base_model, extra=extra or {})
  tokenizer.save(out_dir)
  return (f"wrote a PEFT LoRA adapter to {out_dir}: peft.PeftModel.from_pretrained(<the "
          f"transformers model of {base_model}>, {out_dir!r})")


def export_encoder_adapter(run_dir: str, out_dir: str, task_type: str, *, prefixed: bool,
                           head=lambda model: {}) -> str:
  """An encoder run's adapter (model.encoder), HF-named as in its transformers class
  (`prefixed`: "bert.encoder..." as in *ForSequenceClassification), with `head(model)`'s
  extra HF-named tensors (a classifier's new head), for the run's pretrained model."""
  from fjft.run import opened
  info = opened.read_info(run_dir)
  check_is_lora(run_dir, info)
  run = opened.open_run(run_dir, merge=False)
  family = registry.family_module(info["family"])
  cfg = family.Config.from_hf(info["hf_config"])
  model = nnx.merge(run.graphdef, run.params)
  base = registry.resolve(run.config["model"]["name"]).path
  return export_adapter(out_dir, model.encoder, family,
                        family.hf_linear_names(cfg, prefixed=prefixed), info["peft_structure"],
                        task_type, base, run.tokenizer, head(model))
