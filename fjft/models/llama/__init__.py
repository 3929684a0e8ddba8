"""The Llama family: decoder LMs (Llama 2/3, SmolLM2, Mistral, Qwen2) in Flax NNX.

A family module (fjft.models.family): config.py the architecture, rope.py the
rotary embeddings, modules.py the layers and KV cache, tensors.py the HF
checkpoint names and layouts, gguf.py llama.cpp's.

Logical axis names (one per param dimension, in `out_sharding`):

  "vocab"     rows of the token embedding / columns of the LM head
  "embed"     the hidden (model) dimension
  "heads"     the fused num_heads * head_dim dimension of q and of o's input
  "kv_heads"  the fused num_kv_heads * head_dim dimension of k and v
  "mlp"       the feed-forward intermediate dimension
  "layers"    the leading stacked-layer axis when Config.scan_layers is True

Parameter tree (HF LlamaForCausalLM names in brackets; Linear weights are
transposed between HF's [out, in] and our [in, out]):

  embed_tokens.embedding                     [V, H]   (model.embed_tokens.weight)
  layers.{i}.input_layernorm.scale           [H]      (model.layers.{i}.input_layernorm.weight)
  layers.{i}.self_attn.q_proj.{kernel,bias}  [H, N*D] (…self_attn.q_proj.*)
  layers.{i}.self_attn.k_proj.{kernel,bias}  [H, K*D]
  layers.{i}.self_attn.v_proj.{kernel,bias}  [H, K*D]
  layers.{i}.self_attn.o_proj.{kernel,bias}  [N*D, H]
  layers.{i}.post_attention_layernorm.scale  [H]
  layers.{i}.mlp.{gate,up}_proj.kernel       [H, I]
  layers.{i}.mlp.down_proj.kernel            [I, H]
  norm.scale                                 [H]      (model.norm.weight)
  lm_head.kernel                             [H, V]   (lm_head.weight; absent when tied)

With scan_layers=True, `layers.{i}.X` becomes `layers.X` with a leading
[num_layers] axis; the checkpoint mapping is the same.
"""

from __future__ import annotations

from fjft.models import build
from fjft.models.llama.config import MODEL_TYPES, Config
from fjft.models.llama.gguf import GGUF
from fjft.models.llama.modules import Model, init_cache
from fjft.models.llama.rope import apply_rope, rope_inv_freq
from fjft.models.llama.tensors import (canonical_name, hf_linear_names, hf_tensors,
                                       ignorable, init_std)

KIND = "decoder"
# HF stores Linear weights [out, in] (PEFT's fan_in_fan_out=False).
HF_WEIGHT_IN_FIRST = False

from_hf, from_state_dict, init_random, to_hf_state_dict = build.weight_functions(__name__)

__all__ = ["Config", "GGUF", "HF_WEIGHT_IN_FIRST", "KIND", "MODEL_TYPES", "Model",
           "apply_rope", "canonical_name", "from_hf", "from_state_dict", "hf_linear_names",
           "hf_tensors", "ignorable", "init_cache", "init_random", "init_std",
           "rope_inv_freq", "to_hf_state_dict"]
