"""The DistilBERT family: HF model_type "distilbert" in Flax NNX, with HF weights I/O.

A family of its own rather than a BERT model_type: no token-type embeddings, no pooler,
other tensor names and config.json keys (dim, n_layers, hidden_dim, activation). Its
layers are fjft.models.bert.modules.Layer, which compute what DistilBERT's blocks do, so
the param tree and logical axes are BERT's without token types and pooler:

  embeddings.word_embeddings.embedding      [V, H]  (distilbert.embeddings.word_embeddings.weight)
  embeddings.position_embeddings.embedding  [P, H]
  embeddings.layer_norm.{scale,bias}        [H]     (embeddings.LayerNorm.*)
  layers.{i}.attention.qkv.{kernel,bias}    [H, 3, H]  (transformer.layer.{i}.attention.{q,k,v}_lin)
  layers.{i}.attention.output.*             (attention.out_lin)
  layers.{i}.attention.layer_norm.*         (sa_layer_norm)
  layers.{i}.intermediate.*, output.*       (ffn.lin1, ffn.lin2)
  layers.{i}.output_layer_norm.*            (output_layer_norm)

The Model's second output is the [CLS] state. HF's classification head on it is
pre_classifier + ReLU + classifier (fjft.tasks.classify.model builds the same head).
"""

from __future__ import annotations

from fjft.models import build
from fjft.models.distilbert.config import Config
from fjft.models.distilbert.modules import Model
from fjft.models.distilbert.tensors import (canonical_name, hf_linear_names, hf_tensors,
                                            ignorable, init_std)

KIND = "encoder"
MODEL_TYPES = ("distilbert",)
HF_WEIGHT_IN_FIRST = False
GGUF = None

from_hf, from_state_dict, init_random, to_hf_state_dict = build.weight_functions(__name__)

__all__ = ["Config", "GGUF", "HF_WEIGHT_IN_FIRST", "KIND", "MODEL_TYPES", "Model",
           "canonical_name", "from_hf", "from_state_dict", "hf_linear_names", "hf_tensors",
           "ignorable", "init_std", "init_random", "to_hf_state_dict"]
