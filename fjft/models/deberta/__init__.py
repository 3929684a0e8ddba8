"""The DeBERTa-v2 family: DeBERTa-v2 and v3 encoders in Flax NNX, with HF weights I/O.

A family module (fjft.models.family): config.py the architecture, modules.py the layers,
tensors.py the checkpoint names and layouts (HF model_type "deberta-v2", which DeBERTa-v3
checkpoints also have).

Attention is disentangled (He et al.): besides content-to-content, each head adds
content-to-position (c2p: queries against projected relative-position embeddings) and
position-to-content (p2c: keys against them) terms, the relative distance i - j
log-bucketed beyond position_buckets / 2 (v3) and clamped to +-att_span; the logits are
divided by sqrt(head_dim * (1 + number of such terms)). v3 shares the content q/k
projections with the positions (share_att_key), normalises the relative embeddings
(norm_rel_ebd "layer_norm") and adds no absolute positions (position_biased_input False).
v2's convolution after the first layer (conv_kernel_size) is implemented too.

Logical axis names are fjft.models.bert's ("vocab", "embed", "heads", "mlp", "position",
"types"); the relative embeddings' rows are "position".

Parameter tree (HF names under "deberta." in brackets; optional parts as the config says):

  embeddings.word_embeddings.embedding       [V, E]   (embeddings.word_embeddings.weight)
  embeddings.position_embeddings.embedding   [P, E]   (position_biased_input)
  embeddings.token_type_embeddings.embedding [Tv, E]  (type_vocab_size > 0)
  embeddings.embed_proj.kernel               [E, H]   (embedding_size != hidden_size)
  embeddings.layer_norm.{scale,bias}         [H]      (embeddings.LayerNorm.*)
  rel_embeddings.embedding                   [2S, H]  (encoder.rel_embeddings.weight)
  rel_layer_norm.{scale,bias}                [H]      (encoder.LayerNorm.*)
  layers.{i}.attention.{query,key,value}.*   [H, H]   (attention.self.{query,key,value}_proj.*)
  layers.{i}.attention.{pos_key,pos_query}.* [H, H]   (attention.self.pos_*_proj, unshared)
  layers.{i}.attention.output.*, .layer_norm.*         (attention.output.dense / .LayerNorm)
  layers.{i}.intermediate.*, output.*, output_layer_norm.*   (as BERT)
  conv.{kernel [k, H/g, H], bias}, conv.layer_norm.*   (encoder.conv.conv / .LayerNorm)

The Model has no pooler (DebertaV2Model has none; the ContextPooler belongs to
DebertaV2ForSequenceClassification): its second output is the [CLS] token's state.
"""

from __future__ import annotations

from fjft.models import build
from fjft.models.deberta.config import MODEL_TYPE, Config
from fjft.models.deberta.modules import Model, log_bucket_position, relative_positions
from fjft.models.deberta.tensors import (canonical_name, hf_linear_names, hf_tensors,
                                         ignorable, init_std)

KIND = "encoder"
MODEL_TYPES = (MODEL_TYPE,)
HF_WEIGHT_IN_FIRST = False   # HF stores Linear weights [out, in]
GGUF = None

from_hf, from_state_dict, init_random, to_hf_state_dict = build.weight_functions(__name__)

__all__ = ["Config", "GGUF", "HF_WEIGHT_IN_FIRST", "KIND", "MODEL_TYPES", "Model",
           "canonical_name", "from_hf", "from_state_dict", "hf_linear_names", "hf_tensors",
           "ignorable", "init_random", "init_std", "log_bucket_position",
           "relative_positions", "to_hf_state_dict"]
