"""How llama.cpp's GGUF files hold Gemma 2 and Gemma 3 (text): tensor names, the config
from metadata, and the norm weights, which llama.cpp stores with Gemma's + 1 added
(transformers' GGUF loader subtracts it again, as this does)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fjft.models.family import GGUFLayout
from fjft.weights.gguf_meta import Meta, f32

# GGUF architecture -> HF model_type (llama.cpp's gemma3 is the text model).
_ARCHS = {"gemma2": "gemma2", "gemma3": "gemma3_text"}
_TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_BLOCK = {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "attn_output": "self_attn.o_proj", "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
# llama.cpp scales the attention of the 27B models (46 layers for Gemma 2, 62 for Gemma 3)
# by (hidden / heads) ** -0.5 and every other size by head_dim ** -0.5; GGUF has no key.
_LAYERS_27B = {"gemma2": 46, "gemma3": 62}
# llama.cpp's Gemma 3: every 6th layer global, the sliding ones on RoPE base 10000.
_GEMMA3_PATTERN, _GEMMA3_LOCAL_BASE = 6, 10000.0


def _to_hf(meta: Meta, model_type: str, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
  arch = meta.arch
  hidden = int(meta.scalar(f"{arch}.embedding_length"))
  heads = int(meta.scalar(f"{arch}.attention.head_count"))
  layers = int(meta.scalar(f"{arch}.block_count"))
  head_dim = int(meta.scalar(f"{arch}.attention.key_length", hidden // heads))
  cfg = {
      "model_type": model_type,
      "vocab_size": tensors["model.embed_tokens.weight"].shape[0],
      "hidden_size": hidden,
      "intermediate_size": int(meta.scalar(f"{arch}.feed_forward_length")),
      "num_hidden_layers": layers,
      "num_attention_heads": heads,
      "num_key_value_heads": int(meta.scalar(f"{arch}.attention.head_count_kv", heads)),
      "head_dim": head_dim,
      "rms_norm_eps": f32(meta.scalar(f"{arch}.attention.layer_norm_rms_epsilon")),
      "rope_theta": f32(meta.scalar(f"{arch}.rope.freq_base", 10000.0)),
      "max_position_embeddings": int(meta.scalar(f"{arch}.context_length")),
      "sliding_window": int(meta.scalar(f"{arch}.attention.sliding_window", 4096)),
      "query_pre_attn_scalar": hidden // heads if layers == _LAYERS_27B[arch] else head_dim,
      "tie_word_embeddings": "lm_head.weight" not in tensors,
      "hidden_activation": "gelu_pytorch_tanh",
  }
  for cap, default in (("attn_logit_softcapping", 50.0), ("final_logit_softcapping", 30.0)):
    value = meta.get(f"{arch}.{cap}")
    cfg[cap] = f32(value) if value is not None else (default if arch == "gemma2" else None)
  if arch == "gemma3":
    cfg["rope_local_base_freq"] = _GEMMA3_LOCAL_BASE
    cfg["sliding_window_pattern"] = _GEMMA3_PATTERN
    if meta.get(f"{arch}.rope.scaling.type") not in (None, "none"):
      cfg["rope_scaling"] = {"rope_type": meta.get(f"{arch}.rope.scaling.type"),
                             "factor": f32(meta.need(f"{arch}.rope.scaling.factor"))}
  for name in tensors:
    if name.endswith("norm.weight"):  # every Gemma norm: llama.cpp stores 1 + w
      tensors[name] = tensors[name].astype(np.float32) - np.float32(1.0)
  return cfg


GGUF = GGUFLayout(archs=_ARCHS, top=_TOP, block_prefix="model.layers.{}.", block=_BLOCK,
                  to_hf=_to_hf)
