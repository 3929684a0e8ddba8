"""How a Gemma-family checkpoint names and lays out each param (HF GemmaForCausalLM /
Gemma2ForCausalLM / Gemma3ForCausalLM names). Norm weights are HF's own tensors (the
model applies 1 + w)."""

from __future__ import annotations

from fjft.models.gemma.config import Config
from fjft.models.llama import tensors as llama_tensors
from fjft.weights.hf_tensors import HFTensor, linear, linear_names, tensor


def _norm(path: tuple[str, ...], hf: str, dim: int) -> HFTensor:
  return tensor((*path, "weight"), f"{hf}.weight", (dim,))


def hf_tensors(cfg: Config) -> list[HFTensor]:
  """Every param and its HF tensor; Linear weights are transposed ([out, in] in HF)."""
  h, inter, d = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
  q_dim, kv_dim = cfg.num_heads * d, cfg.num_kv_heads * d
  pre = "model.layers.{i}"
  attn = f"{pre}.self_attn"
  norms = ["input_layernorm", "post_attention_layernorm"]
  if cfg.sandwich_norms:
    norms += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
  table = [tensor(("embed_tokens", "embedding"), "model.embed_tokens.weight",
                  (cfg.vocab_size, h)),
           _norm(("norm",), "model.norm", h),
           *(_norm((name,), f"{pre}.{name}", h) for name in norms)]
  if cfg.qk_norm:
    table += [_norm(("self_attn", name), f"{attn}.{name}", d) for name in ("q_norm", "k_norm")]
  for name, n_in, n_out in (("q_proj", h, q_dim), ("k_proj", h, kv_dim),
                            ("v_proj", h, kv_dim), ("o_proj", q_dim, h)):
    table += linear(("self_attn", name), f"{attn}.{name}", n_in, n_out,
                    bias=cfg.attention_bias)
  for name, n_in, n_out in (("gate_proj", h, inter), ("up_proj", h, inter),
                            ("down_proj", inter, h)):
    table += linear(("mlp", name), f"{pre}.mlp.{name}", n_in, n_out, bias=False)
  if not cfg.tie_word_embeddings:
    table += linear(("lm_head",), "lm_head", h, cfg.vocab_size, bias=False)
  return table


# The model. prefix, the RoPE buffers and a saved tied head: as for Llama.
canonical_name = llama_tensors.canonical_name
ignorable = llama_tensors.ignorable
# HF's init: every weight ~ N(0, initializer_range) (norm weights 0: fjft.models.build).
init_std = llama_tensors.init_std


def hf_linear_names(cfg: Config) -> dict[str, tuple[str, ...]]:
  """Each Linear's HF module name (fjft.weights.hf_tensors.linear_names)."""
  return linear_names(hf_tensors(cfg), cfg.num_layers)
