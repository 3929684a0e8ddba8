"""The architecture of a BERT-family encoder, read from and written to HF config.json."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from fjft.errors import ConfigError
from fjft.models import config_fields
from fjft.models.config_fields import REQUIRED
from fjft.models.layers.activations import ACTIVATIONS

# model_type -> first position id. RoBERTa numbers positions from
# pad_token_id + 1 (pads keep pad_token_id); BERT from 0. XLM-RoBERTa is RoBERTa's
# architecture with another vocabulary (transformers' XLMRobertaModel is a copy of
# RobertaModel, its checkpoints prefixed "roberta." as RoBERTa's), so it is one more
# model_type here rather than a family of its own.
POSITION_OFFSET_FROM_PAD = {"bert": False, "roberta": True, "xlm-roberta": True}

# (Config field, HF config.json key, default). Defaults are HF BertConfig's.
_HF_FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("vocab_size", "vocab_size", REQUIRED),
    ("hidden_size", "hidden_size", REQUIRED),
    ("num_layers", "num_hidden_layers", REQUIRED),
    ("num_heads", "num_attention_heads", REQUIRED),
    ("intermediate_size", "intermediate_size", REQUIRED),
    ("max_position_embeddings", "max_position_embeddings", 512),
    ("type_vocab_size", "type_vocab_size", 2),
    ("layer_norm_eps", "layer_norm_eps", 1e-12),
    ("hidden_dropout", "hidden_dropout_prob", 0.1),
    ("attention_dropout", "attention_probs_dropout_prob", 0.1),
    ("hidden_act", "hidden_act", "gelu"),
    ("pad_token_id", "pad_token_id", 0),
    ("initializer_range", "initializer_range", 0.02),
    ("model_type", "model_type", "bert"),
)

# What a run may set without it being part of the checkpoint (the dropout rates
# are in config.json too; a run's own override them).
RUNTIME_OPTIONS = ("attention_impl", "hidden_dropout", "attention_dropout")


@dataclasses.dataclass(frozen=True)
class Config:
  """Architecture of a BERT-family encoder. Defaults are bert-base-uncased.

  `attention_impl` is a runtime choice, not part of the checkpoint: None lets
  jax pick (XLA on CPU), "cudnn" asks for cuDNN flash attention on GPU, which
  needs a 16-bit compute_dtype and assumes right-padded batches (padding is
  passed as per-row key lengths). While attention dropout is active (a
  dropout_key and attention_dropout > 0) attention runs as plain XLA ops,
  because jax.nn.dot_product_attention cannot drop attention probabilities;
  set attention_dropout=0.0 to keep the fused kernel in training.
  """

  vocab_size: int = 30522
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout: float = 0.1
  attention_dropout: float = 0.1
  hidden_act: str = "gelu"
  pad_token_id: int = 0
  model_type: str = "bert"
  initializer_range: float = 0.02
  attention_impl: str | None = None

  def __post_init__(self):
    config_fields.check_types(self)
    if self.model_type not in POSITION_OFFSET_FROM_PAD:
      raise ConfigError(
          f"model_type {self.model_type!r} is not a BERT-family type this"
          f" module implements; supported: {sorted(POSITION_OFFSET_FROM_PAD)}")
    if self.hidden_size % self.num_heads:
      raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by"
                        f" num_heads {self.num_heads}")
    if self.hidden_act not in ACTIVATIONS:
      raise ConfigError(f"hidden_act {self.hidden_act!r} is not supported;"
                        f" supported: {sorted(ACTIVATIONS)}")
    config_fields.check_attention_impl(self)
    config_fields.check_dropout(self, ("hidden_dropout", "attention_dropout"))

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def position_offset(self) -> int:
    """Position id of the first token (pad_token_id + 1 for RoBERTa)."""
    if POSITION_OFFSET_FROM_PAD[self.model_type]:
      return self.pad_token_id + 1
    return 0

  @classmethod
  def from_hf(cls, d: Mapping[str, Any], **runtime_options: Any) -> Config:
    """Builds a Config from the dict of an HF config.json; `runtime_options`
    (RUNTIME_OPTIONS) replace what the file says."""
    unknown = sorted(set(runtime_options) - set(RUNTIME_OPTIONS))
    if unknown:
      raise ConfigError(f"{unknown} are not runtime options of a BERT-family encoder;"
                        f" those are {list(RUNTIME_OPTIONS)}")
    pos_type = d.get("position_embedding_type", "absolute")
    if pos_type != "absolute":
      raise ConfigError(f"position_embedding_type {pos_type!r} is not"
                        " supported; only 'absolute'")
    kwargs = config_fields.hf_kwargs(d, _HF_FIELDS)
    if kwargs["pad_token_id"] is None:
      kwargs["pad_token_id"] = 0
    return cls(**{**kwargs, **runtime_options})

  def to_hf(self) -> dict[str, Any]:
    """Returns the HF config.json fields (without architectures/labels)."""
    d = config_fields.hf_dict(self, _HF_FIELDS)
    d["position_embedding_type"] = "absolute"
    return d
