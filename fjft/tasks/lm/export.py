"""A decoder run exported: an HF AutoModelForCausalLM directory, or (a LoRA run) its
adapter in the PEFT format."""

from __future__ import annotations

import os

from flax import nnx

from fjft.errors import FjftError
from fjft.models.hf_export import export_decoder
from fjft.run import opened
from fjft.tasks import peft_export


def export_hf(run_dir: str, out_dir: str) -> str:
  return export_decoder(opened.open_run(run_dir), out_dir)


def export_peft(run_dir: str, out_dir: str) -> str:
  """Writes a LoRA run's adapter in the PEFT format (task type CAUSAL_LM), for the
  pretrained model the run started from (model.json's source)."""
  info = opened.read_info(run_dir)
  peft_export.check_is_lora(run_dir, info)
  if os.path.isfile(os.path.join(info["source"], "model.json")):
    raise FjftError(f"--format=peft: {run_dir} started from the run {info['source']}, which "
                    "PEFT cannot load as a base model; export the merged model with "
                    "--format=hf, or export that run first and start from its export")
  lm = opened.open_run(run_dir, merge=False)
  return peft_export.export_adapter(out_dir, nnx.merge(lm.graphdef, lm.params), lm.family,
                                    lm.family.hf_linear_names(lm.cfg), info["peft_structure"],
                                    "CAUSAL_LM", info["source"], lm.tokenizer)
