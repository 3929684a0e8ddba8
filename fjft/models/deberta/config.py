"""The architecture of a DeBERTa-v2 / v3 encoder, read from and written to HF config.json
(DeBERTa-v3 checkpoints have model_type "deberta-v2")."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from fjft.errors import ConfigError
from fjft.models import config_fields
from fjft.models.config_fields import REQUIRED
from fjft.models.layers.activations import ACTIVATIONS

MODEL_TYPE = "deberta-v2"
POS_ATT_TYPES = ("c2p", "p2c")

# (Config field, HF config.json key, default). Defaults are HF DebertaV2Config's; the
# fields it only keeps as extra attributes (position_buckets, norm_rel_ebd, share_att_key,
# conv_*) default as DebertaV2Model reads them (getattr with a default).
_HF_FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("vocab_size", "vocab_size", REQUIRED),
    ("hidden_size", "hidden_size", REQUIRED),
    ("num_layers", "num_hidden_layers", REQUIRED),
    ("num_heads", "num_attention_heads", REQUIRED),
    ("intermediate_size", "intermediate_size", REQUIRED),
    ("max_position_embeddings", "max_position_embeddings", 512),
    ("type_vocab_size", "type_vocab_size", 0),
    ("layer_norm_eps", "layer_norm_eps", 1e-7),
    ("hidden_dropout", "hidden_dropout_prob", 0.1),
    ("attention_dropout", "attention_probs_dropout_prob", 0.1),
    ("hidden_act", "hidden_act", "gelu"),
    ("pad_token_id", "pad_token_id", 0),
    ("initializer_range", "initializer_range", 0.02),
    ("relative_attention", "relative_attention", False),
    ("max_relative_positions", "max_relative_positions", -1),
    ("position_buckets", "position_buckets", -1),
    ("position_biased_input", "position_biased_input", True),
    ("norm_rel_ebd", "norm_rel_ebd", "none"),
    ("share_att_key", "share_att_key", False),
    ("embedding_size", "embedding_size", None),
    ("pooler_hidden_act", "pooler_hidden_act", "gelu"),
    ("pooler_dropout", "pooler_dropout", 0.0),
    ("conv_kernel_size", "conv_kernel_size", 0),
    ("conv_groups", "conv_groups", 1),
    ("conv_act", "conv_act", "tanh"),
)

RUNTIME_OPTIONS = ("attention_impl", "hidden_dropout", "attention_dropout")
# HF ACT2FN names DeBERTa configs use (conv_act is often "tanh").
ACTS = {**ACTIVATIONS, "tanh": jnp.tanh}


@dataclasses.dataclass(frozen=True)
class Config:
  """Architecture of a DeBERTa-v2/v3 encoder. Defaults are DebertaV2Config's (v3-base sets
  relative_attention, position_buckets=256, norm_rel_ebd="layer_norm", share_att_key,
  pos_att_type=("p2c", "c2p"), position_biased_input=False).

  Attention always runs as XLA ops (the disentangled relative-position terms are a bias on
  the logits); `attention_impl` may be None or "xla".
  """

  vocab_size: int = 128100
  hidden_size: int = 1536
  num_layers: int = 24
  num_heads: int = 24
  intermediate_size: int = 6144
  max_position_embeddings: int = 512
  type_vocab_size: int = 0
  layer_norm_eps: float = 1e-7
  hidden_dropout: float = 0.1
  attention_dropout: float = 0.1
  hidden_act: str = "gelu"
  pad_token_id: int = 0
  initializer_range: float = 0.02
  relative_attention: bool = False
  max_relative_positions: int = -1
  position_buckets: int = -1
  position_biased_input: bool = True
  norm_rel_ebd: str = "none"
  share_att_key: bool = False
  embedding_size: int | None = None
  pooler_hidden_act: str = "gelu"
  pooler_dropout: float = 0.0
  conv_kernel_size: int = 0
  conv_groups: int = 1
  conv_act: str = "tanh"
  pos_att_type: tuple[str, ...] = ()
  attention_impl: str | None = None

  def __post_init__(self):
    config_fields.check_types(self)
    config_fields.check_positive_ints(
        self, ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
               "max_position_embeddings", "conv_groups"))
    if self.hidden_size % self.num_heads:
      raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by"
                        f" num_heads {self.num_heads}")
    for name in ("hidden_act", "pooler_hidden_act", "conv_act"):
      if getattr(self, name) not in ACTS:
        raise ConfigError(f"{name} {getattr(self, name)!r} is not supported;"
                          f" supported: {sorted(ACTS)}")
    unknown = [t for t in self.pos_att_type if t not in POS_ATT_TYPES]
    if unknown:
      raise ConfigError(f"pos_att_type {list(self.pos_att_type)} has {unknown}; each must"
                        f" be one of {list(POS_ATT_TYPES)}")
    if self.conv_kernel_size and (self.conv_kernel_size % 2 == 0
                                  or self.hidden_size % self.conv_groups):
      raise ConfigError(f"conv_kernel_size {self.conv_kernel_size} must be odd and"
                        f" conv_groups {self.conv_groups} divide hidden_size")
    if self.attention_impl not in (None, "xla"):
      raise ConfigError(f"attention_impl {self.attention_impl!r} is not supported by"
                        " DeBERTa (its relative-position bias runs as XLA ops); use None"
                        " or 'xla'")
    config_fields.check_dropout(self, ("hidden_dropout", "attention_dropout",
                                       "pooler_dropout"))

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def embed_dim(self) -> int:
    """The width of the embedding tables (embed_proj maps it to hidden_size)."""
    return self.embedding_size or self.hidden_size

  @property
  def max_relative(self) -> int:
    return (self.max_relative_positions if self.max_relative_positions >= 1
            else self.max_position_embeddings)

  @property
  def att_span(self) -> int:
    """Half the number of relative embeddings (rows 0 .. 2 * att_span - 1)."""
    return self.position_buckets if self.position_buckets > 0 else self.max_relative

  @property
  def rel_layer_norm(self) -> bool:
    return "layer_norm" in [x.strip() for x in self.norm_rel_ebd.lower().split("|")]

  @property
  def scale_factor(self) -> int:
    """1 + the number of relative terms in pos_att_type (HF counts them even without
    relative_attention)."""
    return 1 + len(set(self.pos_att_type))

  @classmethod
  def from_hf(cls, d: Mapping[str, Any], **runtime_options: Any) -> Config:
    """A Config from an HF config.json dict; `runtime_options` (RUNTIME_OPTIONS) replace
    what the file says."""
    unknown = sorted(set(runtime_options) - set(RUNTIME_OPTIONS))
    if unknown:
      raise ConfigError(f"{unknown} are not runtime options of a DeBERTa encoder;"
                        f" those are {list(RUNTIME_OPTIONS)}")
    if d.get("model_type", MODEL_TYPE) != MODEL_TYPE:
      raise ConfigError(f"model_type {d.get('model_type')!r} is not {MODEL_TYPE!r}")
    if d.get("attention_head_size") not in (None, d.get("hidden_size", 0) //
                                            max(d.get("num_attention_heads", 1), 1)):
      raise ConfigError("attention_head_size other than hidden_size / num_attention_heads"
                        " is not supported")
    if d.get("pooler_hidden_size", d.get("hidden_size")) != d.get("hidden_size"):
      raise ConfigError("pooler_hidden_size other than hidden_size is not supported")
    kwargs = config_fields.hf_kwargs(d, _HF_FIELDS)
    if kwargs["pad_token_id"] is None:
      kwargs["pad_token_id"] = 0
    if kwargs["embedding_size"] == kwargs["hidden_size"]:
      kwargs["embedding_size"] = None
    pos = d.get("pos_att_type") or ()
    if isinstance(pos, str):
      pos = [x.strip() for x in pos.lower().split("|")]
    return cls(**{**kwargs, **runtime_options}, pos_att_type=tuple(pos))

  def to_hf(self) -> dict[str, Any]:
    """The HF config.json fields (without architectures/labels)."""
    d = config_fields.hf_dict(self, _HF_FIELDS)
    d["embedding_size"] = self.embed_dim
    d["pooler_hidden_size"] = self.hidden_size
    d["pos_att_type"] = list(self.pos_att_type)
    d["model_type"] = MODEL_TYPE
    return d
