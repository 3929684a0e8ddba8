"""How a GPT-2 checkpoint names and lays out each param (HF GPT2LMHeadModel names;
HF's Conv1D weights are already [in, out], so only c_attn is reshaped)."""

from __future__ import annotations

import math

from fjft.models.gpt2.config import Config
from fjft.weights.hf_tensors import HFTensor, linear, linear_names, norm, tensor


def hf_tensors(cfg: Config) -> list[HFTensor]:
  """Every param and its HF tensor; the LM head is the (tied) token embedding."""
  h, inter = cfg.hidden_size, cfg.intermediate_size
  pre = "transformer.h.{i}"
  return [
      tensor(("wte", "embedding"), "transformer.wte.weight", (cfg.vocab_size, h)),
      tensor(("wpe", "embedding"), "transformer.wpe.weight", (cfg.max_position_embeddings, h)),
      *norm(("ln_f",), "transformer.ln_f", h, bias=True),
      *norm(("ln_1",), f"{pre}.ln_1", h, bias=True),
      # [H, 3H] -> [H, 3, H]: q/k/v on their own axis (see modules.Attention).
      tensor(("attn", "c_attn", "kernel"), f"{pre}.attn.c_attn.weight", (h, 3 * h),
             lambda a: a.reshape(h, 3, h), lambda a: a.reshape(h, 3 * h)),
      tensor(("attn", "c_attn", "bias"), f"{pre}.attn.c_attn.bias", (3 * h,),
             lambda a: a.reshape(3, h), lambda a: a.reshape(-1)),
      *linear(("attn", "c_proj"), f"{pre}.attn.c_proj", h, h, bias=True, transposed=False),
      *norm(("ln_2",), f"{pre}.ln_2", h, bias=True),
      *linear(("mlp", "c_fc"), f"{pre}.mlp.c_fc", h, inter, bias=True, transposed=False),
      *linear(("mlp", "c_proj"), f"{pre}.mlp.c_proj", inter, h, bias=True, transposed=False),
  ]


def canonical_name(cfg: Config, key: str) -> str:
  # The original OpenAI checkpoints (GPT2Model) have no "transformer." prefix.
  return key if key.startswith("transformer.") or key == "lm_head.weight" else (
      "transformer." + key)


def ignorable(cfg: Config, key: str) -> bool:
  # Causal-mask buffers of older checkpoints, and the tied head.
  return key.endswith((".attn.bias", ".attn.masked_bias")) or key == "lm_head.weight"


def init_std(cfg: Config, path: tuple[str, ...]) -> float:
  # HF GPT2PreTrainedModel init: N(0, initializer_range), residual projections
  # (c_proj) scaled down by sqrt(2 * n_layer).
  if "c_proj" in path:
    return cfg.initializer_range / math.sqrt(2 * cfg.num_layers)
  return cfg.initializer_range


def hf_linear_names(cfg: Config) -> dict[str, tuple[str, ...]]:
  """Each Linear's HF module name (fjft.weights.hf_tensors.linear_names)."""
  return linear_names(hf_tensors(cfg), cfg.num_layers)
