"""The Gemma family: Gemma, Gemma 2 and Gemma 3 (text) decoder LMs in Flax NNX.

A family module (fjft.models.family) built on fjft.models.llama's parts: config.py the
architecture, modules.py the layers (Llama's projections with Gemma's norms, GeGLU,
soft-capping, sliding/global layers), tensors.py the HF checkpoint names, gguf.py
llama.cpp's (Gemma 2 and 3).

What differs from Llama:
  - embeddings are scaled by sqrt(hidden_size) (in the compute dtype, as HF);
  - RMSNorms multiply by (1 + weight); the weight is HF's tensor, zero at init;
  - the MLP is GeGLU (tanh GELU), head_dim is explicit, the head is usually tied;
  - Gemma 2 / 3: norms after attention and after the MLP too, attention scaled by
    query_pre_attn_scalar ** -0.5, layers sliding or global per layer_types (a
    per-layer table: scanned layers share one structure), final logit soft-capping;
    Gemma 2 soft-caps attention logits; Gemma 3 has q/k norms and its own RoPE base
    for the sliding layers (rope_local_base_freq), linear RoPE scaling on the global.

Parameter tree (HF names in brackets; Linear weights transposed as Llama's):

  embed_tokens.embedding                       [V, H]  (model.embed_tokens.weight)
  layers.{i}.input_layernorm.weight            [H]     (model.layers.{i}.input_layernorm.weight)
  layers.{i}.self_attn.{q,k,v,o}_proj.{kernel,bias}    (…self_attn.{q,k,v,o}_proj.*)
  layers.{i}.self_attn.{q,k}_norm.weight       [D]     (gemma3_text)
  layers.{i}.post_attention_layernorm.weight   [H]
  layers.{i}.pre_feedforward_layernorm.weight  [H]     (gemma2, gemma3_text)
  layers.{i}.mlp.{gate,up,down}_proj.kernel
  layers.{i}.post_feedforward_layernorm.weight [H]     (gemma2, gemma3_text)
  norm.weight                                  [H]     (model.norm.weight)
  lm_head.kernel                               [H, V]  (lm_head.weight; absent when tied)
"""

from __future__ import annotations

from fjft.models import build
from fjft.models.gemma.config import MODEL_TYPES, Config
from fjft.models.gemma.gguf import GGUF
from fjft.models.gemma.modules import Model, init_cache, inv_freqs
from fjft.models.gemma.tensors import (canonical_name, hf_linear_names, hf_tensors,
                                       ignorable, init_std)

KIND = "decoder"
# HF stores Linear weights [out, in] (PEFT's fan_in_fan_out=False).
HF_WEIGHT_IN_FIRST = False

from_hf, from_state_dict, init_random, to_hf_state_dict = build.weight_functions(__name__)

__all__ = ["Config", "GGUF", "HF_WEIGHT_IN_FIRST", "KIND", "MODEL_TYPES", "Model",
           "canonical_name", "from_hf", "from_state_dict", "hf_linear_names", "hf_tensors",
           "ignorable", "init_cache", "init_random", "init_std", "inv_freqs",
           "to_hf_state_dict"]
