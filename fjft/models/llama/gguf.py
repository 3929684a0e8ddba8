"""How llama.cpp's GGUF files hold a Llama-family model: tensor names, the config
from metadata, and the Q/K rows it permutes for its interleaved RoPE."""

from __future__ import annotations

from typing import Any

import numpy as np

from fjft.models.family import GGUFLayout
from fjft.weights.gguf_meta import Meta, f32

# GGUF architecture -> HF model_type; llama.cpp writes SmolLM as "llama".
_ARCHS = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2"}
# Whether llama.cpp permuted Q/K rows for its interleaved ("normal") RoPE;
# architectures on NEOX rope (qwen2) are stored as in HF.
_ROPE_PERMUTED = ("llama", "mistral")

_TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_BLOCK = {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def _unpermute_rope(w: np.ndarray, n_heads: int) -> np.ndarray:
  """Undoes llama.cpp's Q/K row permutation (HF's rotate-half -> interleaved).

  llama.cpp orders each head's rows as pairs (i, i + head_dim/2) side by side;
  HF keeps the two halves apart. Works for weights [out, in] and biases [out].
  """
  half = w.shape[0] // n_heads // 2
  return w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _rope_scaling(meta: Meta) -> dict[str, Any] | None:
  arch = meta.arch
  kind = meta.get(f"{arch}.rope.scaling.type")
  if kind in (None, "none"):
    return None
  scaling: dict[str, Any] = {"rope_type": kind,
                             "factor": f32(meta.need(f"{arch}.rope.scaling.factor"))}
  original = meta.get(f"{arch}.rope.scaling.original_context_length")
  if original is not None:
    scaling["original_max_position_embeddings"] = int(original)
  return scaling


def decoder_config(meta: Meta, model_type: str,
                   tensors: dict[str, np.ndarray]) -> dict[str, Any]:
  """The HF config fields of a Llama-shaped decoder, from the metadata keys llama.cpp
  writes for every such architecture (also read by Qwen3, OLMo 2 and Phi-3's layouts)."""
  arch = meta.arch
  hidden = int(meta.scalar(f"{arch}.embedding_length"))
  heads = int(meta.scalar(f"{arch}.attention.head_count"))
  kv_heads = int(meta.scalar(f"{arch}.attention.head_count_kv", heads))
  cfg = {
      "model_type": model_type,
      "vocab_size": tensors["model.embed_tokens.weight"].shape[0],
      "hidden_size": hidden,
      "intermediate_size": int(meta.scalar(f"{arch}.feed_forward_length")),
      "num_hidden_layers": int(meta.scalar(f"{arch}.block_count")),
      "num_attention_heads": heads,
      "num_key_value_heads": kv_heads,
      "head_dim": int(meta.scalar(f"{arch}.attention.key_length", hidden // heads)),
      "rms_norm_eps": f32(meta.scalar(f"{arch}.attention.layer_norm_rms_epsilon")),
      "rope_theta": f32(meta.scalar(f"{arch}.rope.freq_base", 10000.0)),
      "max_position_embeddings": int(meta.scalar(f"{arch}.context_length")),
      "tie_word_embeddings": "lm_head.weight" not in tensors,
      "hidden_act": "silu",
  }
  if (scaling := _rope_scaling(meta)) is not None:
    cfg["rope_scaling"] = scaling
  return cfg


def _to_hf(meta: Meta, model_type: str, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
  cfg = decoder_config(meta, model_type, tensors)
  heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
  if meta.arch in _ROPE_PERMUTED:
    for name in list(tensors):
      if ".self_attn.q_proj." in name:
        tensors[name] = _unpermute_rope(tensors[name], heads)
      elif ".self_attn.k_proj." in name:
        tensors[name] = _unpermute_rope(tensors[name], kv_heads)
  return cfg


GGUF = GGUFLayout(archs=_ARCHS, top=_TOP, block_prefix="model.layers.{}.", block=_BLOCK,
                  to_hf=_to_hf)
