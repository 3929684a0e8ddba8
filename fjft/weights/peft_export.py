"""A LoRA run's adapter written in the PEFT format (each task's `--format=peft` export)."""

from __future__ import annotations

from fjft.errors import FjftError
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
