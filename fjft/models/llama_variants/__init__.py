"""Qwen3, OLMo 2, Granite and SmolLM3: decoder LMs that are Llama plus a small difference.

One family module (fjft.models.family) for the four HF model_types, because each is
Llama's block with one or two switches (config.py lists them): a q/k RMSNorm (Qwen3 per
head, OLMo 2 over the whole projection), OLMo 2's post-norms, Granite's four scalars,
SmolLM3's NoPE layers. It reuses fjft.models.llama's RoPE, gated MLP and checkpoint-name
rules rather than widening llama.Config, whose model_types keep their narrow surface.

config.py the architecture, modules.py the layers and KV cache, tensors.py the HF
checkpoint names and layouts, gguf.py llama.cpp's (Qwen3 and OLMo 2).

Logical axis names are llama's (fjft.models.llama). Parameter tree: llama's, and

  layers.{i}.self_attn.{q,k}_norm.scale      [D] qwen3 (axis None), [N*D] / [K*D] olmo2
                                             (…self_attn.{q,k}_norm.weight)
  layers.{i}.post_feedforward_layernorm.scale [H]  olmo2, which has no input_layernorm
                                             and norms the attention output with
                                             post_attention_layernorm

With scan_layers=True, `layers.{i}.X` becomes `layers.X` with a leading [num_layers]
axis; the checkpoint mapping is the same.
"""

from __future__ import annotations

from fjft.models import build
from fjft.models.llama_variants.config import MODEL_TYPES, Config
from fjft.models.llama_variants.gguf import GGUF
from fjft.models.llama_variants.modules import Model, init_cache
from fjft.models.llama_variants.tensors import (canonical_name, hf_linear_names, hf_tensors,
                                                ignorable, init_std)

KIND = "decoder"
# HF stores Linear weights [out, in] (PEFT's fan_in_fan_out=False).
HF_WEIGHT_IN_FIRST = False

from_hf, from_state_dict, init_random, to_hf_state_dict = build.weight_functions(__name__)

__all__ = ["Config", "GGUF", "HF_WEIGHT_IN_FIRST", "KIND", "MODEL_TYPES", "Model",
           "canonical_name", "from_hf", "from_state_dict", "hf_linear_names",
           "hf_tensors", "ignorable", "init_cache", "init_random", "init_std",
           "to_hf_state_dict"]
