"""How llama.cpp's GGUF files hold Phi-3 / Phi-4: the fused qkv and gate_up projections
as HF has them (attn_qkv; ffn_up is gate and up concatenated), the config from metadata,
and longrope's factors, which llama.cpp stores as two tensors rather than metadata."""

from __future__ import annotations

from typing import Any

import numpy as np

from fjft.errors import CheckpointError
from fjft.models.family import GGUFLayout
from fjft.models.llama.gguf import GGUF as _LLAMA
from fjft.models.llama.gguf import decoder_config
from fjft.weights.gguf_meta import Meta, f32

_ARCHS = {"phi3": "phi3"}
# The factor tensors get placeholder names, which _to_hf moves into rope_scaling.
_FACTORS = {"rope_factors_long": "long_factor", "rope_factors_short": "short_factor"}
_TOP = {**_LLAMA.top, **{name: name for name in _FACTORS}}
_BLOCK = {**{k: _LLAMA.block[k] for k in ("attn_norm", "attn_output", "ffn_norm", "ffn_down")},
          "attn_qkv": "self_attn.qkv_proj", "ffn_up": "mlp.gate_up_proj"}


def _longrope(meta: Meta, tensors: dict[str, np.ndarray]) -> dict[str, Any] | None:
  factors = {key: tensors.pop(f"{name}.weight") for name, key in _FACTORS.items()
             if f"{name}.weight" in tensors}
  if not factors:
    return None
  if len(factors) != len(_FACTORS):
    raise CheckpointError(f"{meta.path}: has {sorted(factors)} of longrope's factors but"
                          " not both rope_factors_long and rope_factors_short")
  # As decimals: the factors' config.json spelling, which float32 rounds back to.
  scaling: dict[str, Any] = {"rope_type": "longrope",
                             **{k: [f32(x) for x in v.reshape(-1)] for k, v in factors.items()}}
  # llama.cpp writes the attention factor it computed (transformers' default formula).
  attn = meta.get(f"{meta.arch}.rope.scaling.attn_factor")
  if attn is not None:
    scaling["attention_factor"] = f32(attn)
  return scaling


def _to_hf(meta: Meta, model_type: str, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
  arch = meta.arch
  cfg = decoder_config(meta, model_type, tensors)
  rotary = int(meta.scalar(f"{arch}.rope.dimension_count", cfg["head_dim"]))
  cfg["partial_rotary_factor"] = rotary / cfg["head_dim"]
  # llama.cpp writes 0 for no window (Phi-4).
  cfg["sliding_window"] = int(meta.scalar(f"{arch}.attention.sliding_window", 0)) or None
  original = meta.get(f"{arch}.rope.scaling.original_context_length")
  if original is not None:
    cfg["original_max_position_embeddings"] = int(original)
  if (scaling := _longrope(meta, tensors)) is not None:
    cfg["rope_scaling"] = scaling
  return cfg


GGUF = GGUFLayout(archs=_ARCHS, top=_TOP, block_prefix=_LLAMA.block_prefix, block=_BLOCK,
                  to_hf=_to_hf)
