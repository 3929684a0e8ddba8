"""How a Phi-3 checkpoint names and lays out each param (HF Phi3ForCausalLM names):
the fused qkv_proj and gate_up_proj are one tensor each there and one Linear here."""

from __future__ import annotations

from fjft.models.llama.tensors import canonical_name, ignorable, init_std
from fjft.models.phi3.config import Config
from fjft.weights.hf_tensors import HFTensor, linear, linear_names, norm, tensor

# LlamaForCausalLM's prefixes, buffers and init are Phi3ForCausalLM's too.
__all__ = ["canonical_name", "hf_linear_names", "hf_tensors", "ignorable", "init_std"]


def hf_tensors(cfg: Config) -> list[HFTensor]:
  """Every param and its HF tensor; Linear weights are transposed ([out, in] in HF)."""
  h, inter = cfg.hidden_size, cfg.intermediate_size
  q_dim, kv_dim = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
  pre = "model.layers.{i}"
  table = [tensor(("embed_tokens", "embedding"), "model.embed_tokens.weight",
                  (cfg.vocab_size, h)),
           *norm(("norm",), "model.norm", h, bias=False),
           *norm(("input_layernorm",), f"{pre}.input_layernorm", h, bias=False),
           *norm(("post_attention_layernorm",), f"{pre}.post_attention_layernorm", h,
                 bias=False)]
  for path, name, n_in, n_out in (
      (("self_attn", "qkv_proj"), "self_attn.qkv_proj", h, q_dim + 2 * kv_dim),
      (("self_attn", "o_proj"), "self_attn.o_proj", q_dim, h),
      (("mlp", "gate_up_proj"), "mlp.gate_up_proj", h, 2 * inter),
      (("mlp", "down_proj"), "mlp.down_proj", inter, h)):
    table += linear(path, f"{pre}.{name}", n_in, n_out, bias=False)
  if not cfg.tie_word_embeddings:
    table += linear(("lm_head",), "lm_head", h, cfg.vocab_size, bias=False)
  return table


def hf_linear_names(cfg: Config) -> dict[str, tuple[str, ...]]:
  """Each Linear's HF module name (fjft.weights.hf_tensors.linear_names): LoRA on
  layers.{i}.self_attn.qkv_proj is PEFT's adapter on model.layers.{i}.self_attn.qkv_proj."""
  return linear_names(hf_tensors(cfg), cfg.num_layers)
