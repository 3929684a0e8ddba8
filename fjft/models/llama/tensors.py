"""How a Llama-family checkpoint names and lays out each param (HF
LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM names)."""

from __future__ import annotations

from fjft.models.llama.config import Config
from fjft.weights.hf_tensors import HFTensor, linear, linear_names, norm, tensor


def hf_tensors(cfg: Config) -> list[HFTensor]:
  """Every param and its HF tensor; Linear weights are transposed ([out, in] in HF)."""
  h, inter = cfg.hidden_size, cfg.intermediate_size
  q_dim, kv_dim = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
  pre = "model.layers.{i}"
  attn = f"{pre}.self_attn"
  table = [tensor(("embed_tokens", "embedding"), "model.embed_tokens.weight",
                  (cfg.vocab_size, h)),
           *norm(("norm",), "model.norm", h, bias=False),
           *norm(("input_layernorm",), f"{pre}.input_layernorm", h, bias=False),
           *norm(("post_attention_layernorm",), f"{pre}.post_attention_layernorm", h,
                 bias=False)]
  for name, n_in, n_out, bias in (("q_proj", h, q_dim, cfg.attention_bias),
                                  ("k_proj", h, kv_dim, cfg.attention_bias),
                                  ("v_proj", h, kv_dim, cfg.attention_bias),
                                  ("o_proj", q_dim, h, cfg.output_bias)):
    table += linear(("self_attn", name), f"{attn}.{name}", n_in, n_out, bias=bias)
  for name, n_in, n_out in (("gate_proj", h, inter), ("up_proj", h, inter),
                            ("down_proj", inter, h)):
    table += linear(("mlp", name), f"{pre}.mlp.{name}", n_in, n_out, bias=cfg.mlp_bias)
  if not cfg.tie_word_embeddings:
    table += linear(("lm_head",), "lm_head", h, cfg.vocab_size, bias=False)
  return table


def canonical_name(cfg: Config, key: str) -> str:
  # LlamaModel (no LM head) checkpoints lack ForCausalLM's "model." prefix.
  return key if key.startswith("model.") or key == "lm_head.weight" else "model." + key


def ignorable(cfg: Config, key: str) -> bool:
  # Old checkpoints saved the (recomputed) RoPE buffer; tied checkpoints
  # sometimes save the head, which is the embedding anyway.
  return key.endswith("rotary_emb.inv_freq") or (cfg.tie_word_embeddings
                                                 and key == "lm_head.weight")


def init_std(cfg: Config, path: tuple[str, ...]) -> float:
  # HF LlamaPreTrainedModel init: every weight ~ N(0, initializer_range).
  return cfg.initializer_range


def hf_linear_names(cfg: Config) -> dict[str, tuple[str, ...]]:
  """Each Linear's HF module name (fjft.weights.hf_tensors.linear_names)."""
  return linear_names(hf_tensors(cfg), cfg.num_layers)
