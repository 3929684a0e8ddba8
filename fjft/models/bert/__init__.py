"""The BERT family: encoders (BERT, MiniLM, RoBERTa, XLM-RoBERTa) in Flax NNX, with HF I/O.

A family module (fjft.models.family): config.py the architecture, modules.py the
layers, tensors.py the checkpoint names and layouts. Loading, export and
placement on a mesh are fjft.models.build / fjft.weights.hf_tensors, over the
table in tensors.py.

Logical axis names. Every Param carries one name per dimension in its
`out_sharding` metadata; `nnx.get_partition_spec(nnx.state(model))` turns the
state into a tree of PartitionSpecs of these names (under
`nnx.logical_axis_rules(rules)` it maps them to mesh axes instead):

  "vocab"     rows of the word embedding table
  "embed"     the hidden (model) dimension
  "heads"     the fused num_heads * head_dim dimension of q/k/v and of the
              attention output projection's input
  "mlp"       the feed-forward intermediate dimension
  "position"  rows of the position embedding table
  "types"     rows of the token-type embedding table
  None        never sharded (the q/k/v selector of the fused kernel, the
              pooler's output dimension)

Params are created with `eager_sharding=False`: the model can be built and
loaded without a mesh; fjft.models.registry.load(..., mesh=, rules=) creates
each param directly in its shards, or the trainer places the state later.

Parameter tree (HF names in brackets; `to_hf_state_dict` and `from_hf` map
between the two, transposing Linear weights and (un)fusing q/k/v):

  embeddings.word_embeddings.embedding        [V, H]  (embeddings.word_embeddings.weight)
  embeddings.position_embeddings.embedding    [P, H]
  embeddings.token_type_embeddings.embedding  [Tv, H]
  embeddings.layer_norm.{scale,bias}          [H]     (embeddings.LayerNorm.*)
  layers.{i}.attention.qkv.kernel             [H, 3, H]  (attention.self.{query,key,value}.weight)
  layers.{i}.attention.qkv.bias               [3, H]
  layers.{i}.attention.output.{kernel,bias}   [H, H]  (attention.output.dense.*)
  layers.{i}.attention.layer_norm.*           [H]     (attention.output.LayerNorm.*)
  layers.{i}.intermediate.{kernel,bias}       [H, I]  (intermediate.dense.*)
  layers.{i}.output.{kernel,bias}             [I, H]  (output.dense.*)
  layers.{i}.output_layer_norm.*              [H]     (output.LayerNorm.*)
  pooler.{kernel,bias}                        [H, H]  (pooler.dense.*)

The fused q/k/v kernel is [H, 3, H] rather than [H, 3H]: the same bytes, so
the projection is still one matmul, but the head dimension stays its own axis
and can be sharded over "heads" without splitting across q, k and v.
"""

from __future__ import annotations

from fjft.models import build
from fjft.models.bert.config import POSITION_OFFSET_FROM_PAD, Config
from fjft.models.bert.modules import Model, cudnn_key_lengths
from fjft.models.bert.tensors import (canonical_name, hf_linear_names, hf_tensors,
                                      ignorable, init_std)

KIND = "encoder"
MODEL_TYPES = tuple(POSITION_OFFSET_FROM_PAD)
# HF stores Linear weights [out, in] (PEFT's fan_in_fan_out=False).
HF_WEIGHT_IN_FIRST = False
GGUF = None  # llama.cpp's GGUF files hold decoders

from_hf, from_state_dict, init_random, to_hf_state_dict = build.weight_functions(__name__)

__all__ = ["Config", "GGUF", "HF_WEIGHT_IN_FIRST", "KIND", "MODEL_TYPES", "Model",
           "canonical_name", "cudnn_key_lengths", "from_hf", "from_state_dict",
           "hf_linear_names", "hf_tensors", "ignorable", "init_random", "init_std",
           "to_hf_state_dict"]
