"""How llama.cpp's GGUF files hold Qwen3 and OLMo 2: Llama's tensor names plus the q/k
norms and OLMo 2's post-norms, and Llama's config from metadata. Neither is stored with
Q/K rows permuted (llama.cpp runs both on NEOX RoPE, HF's rotate-half), so no tensor
changes layout."""

from __future__ import annotations

from typing import Any

import numpy as np

from fjft.errors import CheckpointError
from fjft.models.family import GGUFLayout
from fjft.models.llama.gguf import GGUF as _LLAMA
from fjft.models.llama.gguf import decoder_config
from fjft.weights.gguf_meta import Meta

_ARCHS = {"qwen3": "qwen3", "olmo2": "olmo2"}
# OLMo 2 has no attn_norm / ffn_norm: its norms follow the attention and the MLP, and HF
# calls the first of those post_attention_layernorm, Llama's name for the pre-MLP norm.
_BLOCK = {**_LLAMA.block,
          "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
          "post_attention_norm": "post_attention_layernorm",
          "post_ffw_norm": "post_feedforward_layernorm"}


def _to_hf(meta: Meta, model_type: str, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
  if meta.get(f"{meta.arch}.attention.sliding_window") is not None:
    # llama.cpp writes OLMo 3 (sliding-window layers) as olmo2; HF's Olmo2 has none.
    raise CheckpointError(f"{meta.path}: a {meta.arch} GGUF with sliding-window layers"
                          " (OLMo 3), which fjft does not support")
  cfg = decoder_config(meta, model_type, tensors)
  # HF's one attention_bias switch covers q, k, v and o; the file says by having them.
  cfg["attention_bias"] = "model.layers.0.self_attn.q_proj.bias" in tensors
  return cfg


GGUF = GGUFLayout(archs=_ARCHS, top=_LLAMA.top, block_prefix=_LLAMA.block_prefix,
                  block=_BLOCK, to_hf=_to_hf)
