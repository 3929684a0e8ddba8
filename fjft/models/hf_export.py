"""A decoder written as a Hugging Face directory for AutoModelForCausalLM: a pretrained one
(e.g. read from GGUF) or a fine-tuned run's best checkpoint."""

from __future__ import annotations

from flax import nnx

from fjft.errors import FjftError
from fjft.weights.hf_dir import write_hf_dir

# transformers' causal-LM class for each decoder model_type.
HF_CAUSAL_LM = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                "qwen2": "Qwen2ForCausalLM", "gpt2": "GPT2LMHeadModel"}
HF_CAUSAL_LM.update(gemma="GemmaForCausalLM", gemma2="Gemma2ForCausalLM",
                    gemma3_text="Gemma3ForCausalLM")
HF_CAUSAL_LM["phi3"] = "Phi3ForCausalLM"
HF_CAUSAL_LM.update(qwen3="Qwen3ForCausalLM", olmo2="Olmo2ForCausalLM",
                    granite="GraniteForCausalLM", smollm3="SmolLM3ForCausalLM")


def export_decoder(lm, out_dir: str) -> str:
  """Writes `lm` (a fjft.models.pretrained.LM) to out_dir; returns the line to print."""
  hf_config = lm.cfg.to_hf()
  if hf_config["model_type"] not in HF_CAUSAL_LM:
    raise FjftError(f"export: no Hugging Face causal-LM class known for model_type "
                    f"{hf_config['model_type']!r}")
  hf_config["architectures"] = [HF_CAUSAL_LM[hf_config["model_type"]]]
  tensors = lm.family.to_hf_state_dict(lm.cfg, nnx.merge(lm.graphdef, lm.params))
  write_hf_dir(out_dir, hf_config, tensors)
  lm.tokenizer.save(out_dir)
  return (f"wrote a Hugging Face model to {out_dir}: "
          f"transformers.AutoModelForCausalLM.from_pretrained({out_dir!r})")


def export_pretrained(name_or_path: str, out_dir: str) -> str:
  """A pretrained decoder (registered name, .gguf file or HF folder) as an HF directory."""
  from fjft.models.pretrained import load_lm
  return export_decoder(load_lm(name_or_path), out_dir)
