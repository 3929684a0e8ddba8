"""The GPT-2 family: the GPT-2 causal LM in Flax NNX, with HF and GGUF weights I/O.

Same call signature, Cache and init_cache contract as fjft.models.llama; the
pieces both share are fjft.models.decoder and fjft.models.layers. A family
module (fjft.models.family): config.py, modules.py, tensors.py (HF names and
layouts), gguf.py (llama.cpp's).

Logical axis names: "vocab", "embed", "heads" (the fused num_heads * head_dim
dimension), "mlp", "position" (rows of the position table), "layers" (the
stacked-layer axis under scan_layers), None (the q/k/v selector).

Parameter tree (HF GPT2LMHeadModel names in brackets; HF's Conv1D weights are
already [in, out], so only c_attn is reshaped):

  wte.embedding                      [V, H]     (transformer.wte.weight)
  wpe.embedding                      [P, H]     (transformer.wpe.weight)
  layers.{i}.ln_1.{scale,bias}       [H]        (transformer.h.{i}.ln_1.{weight,bias})
  layers.{i}.attn.c_attn.kernel      [H, 3, H]  (…attn.c_attn.weight [H, 3H])
  layers.{i}.attn.c_attn.bias        [3, H]     (…attn.c_attn.bias [3H])
  layers.{i}.attn.c_proj.{kernel,bias}  [H, H]
  layers.{i}.ln_2.{scale,bias}       [H]
  layers.{i}.mlp.c_fc.{kernel,bias}  [H, I]
  layers.{i}.mlp.c_proj.{kernel,bias}   [I, H]
  ln_f.{scale,bias}                  [H]        (transformer.ln_f.*)

The LM head is always the token embedding (tied), as in every GPT-2
checkpoint. The fused q/k/v kernel keeps q/k/v on their own axis so "heads"
can be sharded without splitting across q, k and v (as bert.py does).
"""

from __future__ import annotations

from fjft.models import build
from fjft.models.gpt2.config import Config
from fjft.models.gpt2.gguf import GGUF
from fjft.models.gpt2.modules import Model, init_cache
from fjft.models.gpt2.tensors import (canonical_name, hf_linear_names, hf_tensors,
                                      ignorable, init_std)

KIND = "decoder"
MODEL_TYPES = ("gpt2",)
# HF's Conv1D stores weights [in, out] (PEFT's fan_in_fan_out=True).
HF_WEIGHT_IN_FIRST = True

from_hf, from_state_dict, init_random, to_hf_state_dict = build.weight_functions(__name__)

__all__ = ["Config", "GGUF", "HF_WEIGHT_IN_FIRST", "KIND", "MODEL_TYPES", "Model",
           "canonical_name", "from_hf", "from_state_dict", "hf_linear_names", "hf_tensors",
           "ignorable", "init_cache", "init_random", "init_std", "to_hf_state_dict"]
