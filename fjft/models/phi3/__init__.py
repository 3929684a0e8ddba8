"""The Phi-3 family: Phi-3, Phi-3.5 and Phi-4 decoder LMs (HF model_type "phi3";
Phi-4 and Phi-4-mini checkpoints use it too) in Flax NNX.

A family module (fjft.models.family): config.py the architecture, rope.py the rotary
embeddings (partial rotary dims, longrope's short/long factors and attention factor),
modules.py the layers and KV cache, tensors.py the HF checkpoint names, gguf.py
llama.cpp's. It reuses the Llama family's norms, head, cache and checkpoint prefixes,
and fjft.models.decoder's layer stack (scan, remat, packing, KV cache).

The fused projections stay fused: qkv_proj (q, k and v) and gate_up_proj (gate and
up) are one Linear each, as in the checkpoint, and are sliced after the matmul.
So loading and export are exact copies of one tensor (no split or concatenation),
and LoRA targets are the modules transformers and PEFT know for Phi-3: an adapter on
`self_attn.qkv_proj` exports as PEFT's adapter on model.layers.{i}.self_attn.qkv_proj
and loads back from one. Split params could not be exported as a PEFT adapter of an
HF Phi-3 (it has no q_proj to put one on).

Logical axes are Llama's; the fused output dims are "heads" (qkv_proj: [H, (N+2K)*D])
and "mlp" (gate_up_proj: [H, 2I]).

Parameter tree (HF Phi3ForCausalLM names in brackets; Linear weights are transposed
between HF's [out, in] and our [in, out]):

  embed_tokens.embedding                     [V, H]        (model.embed_tokens.weight)
  layers.{i}.input_layernorm.scale           [H]           (model.layers.{i}.input_layernorm.weight)
  layers.{i}.self_attn.qkv_proj.kernel       [H, (N+2K)*D] (…self_attn.qkv_proj.weight)
  layers.{i}.self_attn.o_proj.kernel         [N*D, H]      (…self_attn.o_proj.weight)
  layers.{i}.post_attention_layernorm.scale  [H]
  layers.{i}.mlp.gate_up_proj.kernel         [H, 2I]       (…mlp.gate_up_proj.weight)
  layers.{i}.mlp.down_proj.kernel            [I, H]
  norm.scale                                 [H]           (model.norm.weight)
  lm_head.kernel                             [H, V]        (lm_head.weight; absent when tied)

With scan_layers=True, `layers.{i}.X` becomes `layers.X` with a leading [num_layers]
axis; the checkpoint mapping is the same. Dropout: hidden_dropout on each residual
branch is Phi-3's resid_pdrop; transformers never applies embd_pdrop, nor does fjft.
"""

from __future__ import annotations

from fjft.models import build
from fjft.models.phi3.config import MODEL_TYPES, Config
from fjft.models.phi3.gguf import GGUF
from fjft.models.phi3.modules import Model, init_cache
from fjft.models.phi3.rope import attention_factor, inv_freq
from fjft.models.phi3.tensors import (canonical_name, hf_linear_names, hf_tensors,
                                      ignorable, init_std)

KIND = "decoder"
# HF stores Linear weights [out, in] (PEFT's fan_in_fan_out=False).
HF_WEIGHT_IN_FIRST = False

from_hf, from_state_dict, init_random, to_hf_state_dict = build.weight_functions(__name__)

__all__ = ["Config", "GGUF", "HF_WEIGHT_IN_FIRST", "KIND", "MODEL_TYPES", "Model",
           "attention_factor", "canonical_name", "from_hf", "from_state_dict",
           "hf_linear_names", "hf_tensors", "ignorable", "init_cache", "init_random",
           "init_std", "inv_freq", "to_hf_state_dict"]
