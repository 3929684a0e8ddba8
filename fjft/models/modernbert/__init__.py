"""The ModernBERT family: ModernBERT encoders in Flax NNX, with HF weights I/O.

A family module (fjft.models.family): config.py the architecture, modules.py the layers,
tensors.py the checkpoint names and layouts (HF model_type "modernbert").

Pre-norm layers, no biases by default (norm_bias, attention_bias, mlp_bias), RoPE on q/k
(theta global_rope_theta in global layers, local_rope_theta in local ones), attention
alternating between global and local (a token sees those within local_attention // 2;
layer_types, or every global_attn_every_n_layers-th layer global in older configs), a GeGLU
MLP, a final norm. Layer 0 has no attention norm. HF's unpadding is an efficiency trick:
fjft keeps padded batches and masks padding, with the same states at the real tokens.

Logical axis names are fjft.models.bert's ("vocab", "embed", "heads", "mlp").

Parameter tree (HF names under "model." in brackets):

  embeddings.tok_embeddings.embedding  [V, H]     (embeddings.tok_embeddings.weight)
  embeddings.norm.{scale,bias?}        [H]        (embeddings.norm.*)
  layers.{i>0}.attn_norm.*             [H]        (layers.{i}.attn_norm.*)
  layers.{i}.attn.qkv.kernel           [H, 3, H]  (layers.{i}.attn.Wqkv.weight [3H, H])
  layers.{i}.attn.output.kernel        [H, H]     (layers.{i}.attn.Wo.weight)
  layers.{i}.mlp_norm.*                [H]
  layers.{i}.mlp.wi.kernel             [H, 2, I]  (layers.{i}.mlp.Wi.weight [2I, H]: input, gate)
  layers.{i}.mlp.wo.kernel             [I, H]     (layers.{i}.mlp.Wo.weight)
  final_norm.*                         [H]

The Model has no pooler: its second output is the [CLS] token's state (the prediction head
of ModernBertForSequenceClassification is not part of ModernBertModel).
"""

from __future__ import annotations

from fjft.models import build
from fjft.models.modernbert.config import MODEL_TYPE, Config
from fjft.models.modernbert.modules import Model
from fjft.models.modernbert.tensors import (canonical_name, hf_linear_names, hf_tensors,
                                            ignorable, init_std)

KIND = "encoder"
MODEL_TYPES = (MODEL_TYPE,)
HF_WEIGHT_IN_FIRST = False   # HF stores Linear weights [out, in]
GGUF = None

from_hf, from_state_dict, init_random, to_hf_state_dict = build.weight_functions(__name__)

__all__ = ["Config", "GGUF", "HF_WEIGHT_IN_FIRST", "KIND", "MODEL_TYPES", "Model",
           "canonical_name", "from_hf", "from_state_dict", "hf_linear_names", "hf_tensors",
           "ignorable", "init_random", "init_std", "to_hf_state_dict"]
