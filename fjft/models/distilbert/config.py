"""The architecture of a DistilBERT encoder, read from and written to HF config.json."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from fjft.errors import ConfigError
from fjft.models import config_fields
from fjft.models.config_fields import REQUIRED
from fjft.models.layers.activations import ACTIVATIONS

# (Config field, HF config.json key, default). Defaults are HF DistilBertConfig's. The
# field names are BERT's, so that fjft.models.bert.modules' layers run on this Config.
_HF_FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("vocab_size", "vocab_size", REQUIRED),
    ("hidden_size", "dim", REQUIRED),
    ("num_layers", "n_layers", REQUIRED),
    ("num_heads", "n_heads", REQUIRED),
    ("intermediate_size", "hidden_dim", REQUIRED),
    ("max_position_embeddings", "max_position_embeddings", 512),
    ("sinusoidal_pos_embds", "sinusoidal_pos_embds", False),
    ("hidden_dropout", "dropout", 0.1),
    ("attention_dropout", "attention_dropout", 0.1),
    ("hidden_act", "activation", "gelu"),
    ("pad_token_id", "pad_token_id", 0),
    ("initializer_range", "initializer_range", 0.02),
    ("seq_classif_dropout", "seq_classif_dropout", 0.2),
)

RUNTIME_OPTIONS = ("attention_impl", "hidden_dropout", "attention_dropout")


@dataclasses.dataclass(frozen=True)
class Config:
  """Architecture of a DistilBERT encoder. Defaults are distilbert-base-uncased.

  sinusoidal_pos_embds: the checkpoint's position table was made sinusoidal. HF stores
    the table either way (model.safetensors holds it), so fjft reads and writes it as a
    param in both cases; the flag is kept so that an export says the same.
  seq_classif_dropout: the dropout of HF's classification head (kept for export).
  `attention_impl` is a runtime choice, as in fjft.models.bert.Config.
  """

  vocab_size: int = 30522
  hidden_size: int = 768
  num_layers: int = 6
  num_heads: int = 12
  intermediate_size: int = 3072
  max_position_embeddings: int = 512
  sinusoidal_pos_embds: bool = False
  hidden_dropout: float = 0.1
  attention_dropout: float = 0.1
  hidden_act: str = "gelu"
  pad_token_id: int = 0
  initializer_range: float = 0.02
  seq_classif_dropout: float = 0.2
  attention_impl: str | None = None

  model_type = "distilbert"
  layer_norm_eps = 1e-12   # fixed in HF's DistilBERT, not in config.json

  def __post_init__(self):
    config_fields.check_types(self)
    if self.hidden_size % self.num_heads:
      raise ConfigError(f"dim {self.hidden_size} is not divisible by n_heads {self.num_heads}")
    if self.hidden_act not in ACTIVATIONS:
      raise ConfigError(f"activation {self.hidden_act!r} is not supported;"
                        f" supported: {sorted(ACTIVATIONS)}")
    config_fields.check_attention_impl(self)
    config_fields.check_dropout(self, ("hidden_dropout", "attention_dropout"))

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def position_offset(self) -> int:
    return 0

  @classmethod
  def from_hf(cls, d: Mapping[str, Any], **runtime_options: Any) -> Config:
    """Builds a Config from the dict of an HF config.json; `runtime_options`
    (RUNTIME_OPTIONS) replace what the file says."""
    unknown = sorted(set(runtime_options) - set(RUNTIME_OPTIONS))
    if unknown:
      raise ConfigError(f"{unknown} are not runtime options of a DistilBERT encoder;"
                        f" those are {list(RUNTIME_OPTIONS)}")
    if d.get("model_type", "distilbert") != "distilbert":
      raise ConfigError(f"model_type {d.get('model_type')!r} is not 'distilbert'")
    kwargs = config_fields.hf_kwargs(d, _HF_FIELDS)
    if kwargs["pad_token_id"] is None:
      kwargs["pad_token_id"] = 0
    return cls(**{**kwargs, **runtime_options})

  def to_hf(self) -> dict[str, Any]:
    """Returns the HF config.json fields (without architectures/labels)."""
    return {**config_fields.hf_dict(self, _HF_FIELDS), "model_type": "distilbert"}
