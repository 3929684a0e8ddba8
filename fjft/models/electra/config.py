"""The architecture of an ELECTRA encoder (the discriminator), read from and written to
HF config.json."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from fjft.errors import ConfigError
from fjft.models import config_fields
from fjft.models.config_fields import REQUIRED
from fjft.models.layers.activations import ACTIVATIONS

# (Config field, HF config.json key, default). Defaults are HF ElectraConfig's. The field
# names are BERT's, so that fjft.models.bert.modules' layers run on this Config.
_HF_FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("vocab_size", "vocab_size", REQUIRED),
    ("embedding_size", "embedding_size", 128),
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
)

RUNTIME_OPTIONS = ("attention_impl", "hidden_dropout", "attention_dropout")


@dataclasses.dataclass(frozen=True)
class Config:
  """Architecture of an ELECTRA discriminator. Defaults are electra-small's.

  embedding_size: the width of the embeddings; when it is not hidden_size, a Linear
    (embeddings_project) takes them to hidden_size before the layers, as in HF.
  `attention_impl` is a runtime choice, as in fjft.models.bert.Config.
  """

  vocab_size: int = 30522
  embedding_size: int = 128
  hidden_size: int = 256
  num_layers: int = 12
  num_heads: int = 4
  intermediate_size: int = 1024
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout: float = 0.1
  attention_dropout: float = 0.1
  hidden_act: str = "gelu"
  pad_token_id: int = 0
  initializer_range: float = 0.02
  attention_impl: str | None = None

  model_type = "electra"

  def __post_init__(self):
    config_fields.check_types(self)
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
  def projects_embeddings(self) -> bool:
    return self.embedding_size != self.hidden_size

  @classmethod
  def from_hf(cls, d: Mapping[str, Any], **runtime_options: Any) -> Config:
    """Builds a Config from the dict of an HF config.json; `runtime_options`
    (RUNTIME_OPTIONS) replace what the file says."""
    unknown = sorted(set(runtime_options) - set(RUNTIME_OPTIONS))
    if unknown:
      raise ConfigError(f"{unknown} are not runtime options of an ELECTRA encoder;"
                        f" those are {list(RUNTIME_OPTIONS)}")
    if d.get("model_type", "electra") != "electra":
      raise ConfigError(f"model_type {d.get('model_type')!r} is not 'electra'")
    pos_type = d.get("position_embedding_type", "absolute")
    if pos_type != "absolute":
      raise ConfigError(f"position_embedding_type {pos_type!r} is not supported;"
                        " only 'absolute'")
    kwargs = config_fields.hf_kwargs(d, _HF_FIELDS)
    if kwargs["pad_token_id"] is None:
      kwargs["pad_token_id"] = 0
    return cls(**{**kwargs, **runtime_options})

  def to_hf(self) -> dict[str, Any]:
    """Returns the HF config.json fields (without architectures/labels)."""
    return {**config_fields.hf_dict(self, _HF_FIELDS), "model_type": "electra",
            "position_embedding_type": "absolute"}
