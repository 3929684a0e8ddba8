"""python -m fjft.export --run=<run dir> --out=<dir> [--format=hf|peft]
                       | --model=<pretrained decoder> --out=<dir>

Writes a run's best model for the libraries people deploy with, as its task exports it: a
classifier as a Hugging Face *ForSequenceClassification directory, a decoder as an
AutoModelForCausalLM directory, a search embedder as a sentence-transformers folder; a LoRA
run either merged (those formats) or as its adapter alone in the PEFT format
(`--format=peft`). `--model` converts a pretrained decoder (e.g. a GGUF file) to the HF
format.
"""

from __future__ import annotations

import os

from absl import app, flags

from fjft import cli
from fjft.errors import FjftError, exit_on_user_error
from fjft.models.hf_export import export_pretrained
from fjft.run import opened


def define_flags():
  # Defined only when run as a main, so importing this module defines no flags.
  flags.DEFINE_string("run", None, "Run directory (a fine-tuned classifier, decoder or search "
                      "embedder).")
  flags.DEFINE_string("model", None, "A pretrained decoder: registered name, .gguf file or HF "
                      "folder (e.g. a GGUF converted to the HF format).")
  flags.DEFINE_string("out", None, "Output folder.", required=True)
  flags.DEFINE_enum("format", "hf", ["hf", "peft"], "hf: the whole model (a LoRA run's "
                    "adapters merged in); peft: a LoRA run's adapter alone, for "
                    "peft.PeftModel.from_pretrained.")


# What a run directory holds that no export writes: an --out holding one is a run.
RUN_FILES = ("model.json", "results.json", "checkpoints", "train.lock")


def check_out(out: str, run: str | None, model: str | None) -> None:
  """--out must not be a run directory or the --model folder: the export writes
  config.json, tokenizer files and weights into it, over the run's or the model's own."""
  if not os.path.isdir(out):
    return
  for flag, source in (("run", run), ("model", model)):
    if source and os.path.isdir(source) and os.path.samefile(out, source):
      raise FjftError(f"--out={out} is the --{flag} folder: the export would overwrite its "
                      "config.json and weights; give a new folder")
  held = [name for name in RUN_FILES if os.path.exists(os.path.join(out, name))]
  if held:
    raise FjftError(f"--out={out} is a run directory (it holds {', '.join(held)}): the export "
                    "would overwrite its config.json; give a new folder")


@exit_on_user_error
def main(argv):
  cli.begin(argv)
  f = flags.FLAGS
  if bool(f.run) == bool(f.model):
    raise FjftError("pass exactly one of --run (a run directory) or --model (a pretrained decoder)")
  check_out(f.out, f.run, f.model)
  print(export_pretrained(f.model, f.out) if f.model else opened.export(f.run, f.format, f.out))


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.plain_flags_parser)
