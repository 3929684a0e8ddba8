"""How a Qwen3 / OLMo 2 / Granite / SmolLM3 checkpoint names and lays out each param
(HF Qwen3ForCausalLM / Olmo2ForCausalLM / GraniteForCausalLM / SmolLM3ForCausalLM)."""

from __future__ import annotations

from fjft.models.llama.tensors import canonical_name, ignorable, init_std
from fjft.models.llama_variants.config import Config
from fjft.weights.hf_tensors import HFTensor, linear, linear_names, norm, tensor

__all__ = ["canonical_name", "hf_linear_names", "hf_tensors", "ignorable", "init_std"]


def hf_tensors(cfg: Config) -> list[HFTensor]:
  """Every param and its HF tensor; Linear weights are transposed ([out, in] in HF)."""
  h, inter = cfg.hidden_size, cfg.intermediate_size
  q_dim, kv_dim = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
  pre = "model.layers.{i}"
  attn = f"{pre}.self_attn"
  norms = (("post_attention_layernorm", "post_feedforward_layernorm") if cfg.post_norms
           else ("input_layernorm", "post_attention_layernorm"))
  table = [tensor(("embed_tokens", "embedding"), "model.embed_tokens.weight",
                  (cfg.vocab_size, h)),
           *norm(("norm",), "model.norm", h, bias=False)]
  for name in norms:
    table += norm((name,), f"{pre}.{name}", h, bias=False)
  if cfg.qk_norm is not None:
    q_norm, k_norm = ((cfg.head_dim, cfg.head_dim) if cfg.qk_norm == "head"
                      else (q_dim, kv_dim))
    table += [*norm(("self_attn", "q_norm"), f"{attn}.q_norm", q_norm, bias=False),
              *norm(("self_attn", "k_norm"), f"{attn}.k_norm", k_norm, bias=False)]
  for name, n_in, n_out in (("q_proj", h, q_dim), ("k_proj", h, kv_dim),
                            ("v_proj", h, kv_dim), ("o_proj", q_dim, h)):
    table += linear(("self_attn", name), f"{attn}.{name}", n_in, n_out,
                    bias=cfg.attention_bias)
  for name, n_in, n_out in (("gate_proj", h, inter), ("up_proj", h, inter),
                            ("down_proj", inter, h)):
    table += linear(("mlp", name), f"{pre}.mlp.{name}", n_in, n_out, bias=cfg.mlp_bias)
  if not cfg.tie_word_embeddings:
    table += linear(("lm_head",), "lm_head", h, cfg.vocab_size, bias=False)
  return table


def hf_linear_names(cfg: Config) -> dict[str, tuple[str, ...]]:
  """Each Linear's HF module name (fjft.weights.hf_tensors.linear_names)."""
  return linear_names(hf_tensors(cfg), cfg.num_layers)
