"""The architecture of a ModernBERT encoder, read from and written to HF config.json."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from fjft.errors import ConfigError
from fjft.models import config_fields
from fjft.models.config_fields import REQUIRED
from fjft.models.layers.activations import ACTIVATIONS

MODEL_TYPE = "modernbert"
GLOBAL, LOCAL = "full_attention", "sliding_attention"
POOLINGS = ("cls", "mean")

# (Config field, HF config.json key, default). Defaults are HF ModernBertConfig's.
_HF_FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("vocab_size", "vocab_size", REQUIRED),
    ("hidden_size", "hidden_size", REQUIRED),
    ("num_layers", "num_hidden_layers", REQUIRED),
    ("num_heads", "num_attention_heads", REQUIRED),
    ("intermediate_size", "intermediate_size", REQUIRED),
    ("hidden_act", "hidden_activation", "gelu"),
    ("max_position_embeddings", "max_position_embeddings", 8192),
    ("initializer_range", "initializer_range", 0.02),
    ("initializer_cutoff_factor", "initializer_cutoff_factor", 2.0),
    ("norm_eps", "norm_eps", 1e-5),
    ("norm_bias", "norm_bias", False),
    ("pad_token_id", "pad_token_id", 50283),
    ("eos_token_id", "eos_token_id", 50282),
    ("bos_token_id", "bos_token_id", 50281),
    ("cls_token_id", "cls_token_id", 50281),
    ("sep_token_id", "sep_token_id", 50282),
    ("attention_bias", "attention_bias", False),
    ("attention_dropout", "attention_dropout", 0.0),
    ("local_attention", "local_attention", 128),
    ("embedding_dropout", "embedding_dropout", 0.0),
    ("mlp_bias", "mlp_bias", False),
    ("hidden_dropout", "mlp_dropout", 0.0),
    ("decoder_bias", "decoder_bias", True),
    ("classifier_pooling", "classifier_pooling", "cls"),
    ("classifier_dropout", "classifier_dropout", 0.0),
    ("classifier_bias", "classifier_bias", False),
    ("classifier_activation", "classifier_activation", "gelu"),
)

# hidden_dropout sets both the MLP's (HF mlp_dropout) and the embeddings' dropout.
RUNTIME_OPTIONS = ("attention_impl", "hidden_dropout", "attention_dropout")


@dataclasses.dataclass(frozen=True)
class Config:
  """Architecture of a ModernBERT encoder. Defaults are ModernBERT-base's.

  layer_types: per layer, "full_attention" (global, RoPE theta global_rope_theta) or
  "sliding_attention" (local: each token sees those within local_attention // 2, RoPE
  theta local_rope_theta); old configs give global_attn_every_n_layers instead.
  attention_impl: None / "xla", or "cudnn" (GPU, 16-bit compute_dtype, right padding:
  padding as key lengths, the local window as cuDNN's); attention dropout runs as XLA ops.
  """

  vocab_size: int = 50368
  hidden_size: int = 768
  num_layers: int = 22
  num_heads: int = 12
  intermediate_size: int = 1152
  hidden_act: str = "gelu"
  max_position_embeddings: int = 8192
  initializer_range: float = 0.02
  initializer_cutoff_factor: float = 2.0
  norm_eps: float = 1e-5
  norm_bias: bool = False
  pad_token_id: int | None = 50283
  eos_token_id: int | None = 50282
  bos_token_id: int | None = 50281
  cls_token_id: int | None = 50281
  sep_token_id: int | None = 50282
  attention_bias: bool = False
  attention_dropout: float = 0.0
  local_attention: int = 128
  embedding_dropout: float = 0.0
  mlp_bias: bool = False
  hidden_dropout: float = 0.0
  decoder_bias: bool = True
  classifier_pooling: str = "cls"
  classifier_dropout: float = 0.0
  classifier_bias: bool = False
  classifier_activation: str = "gelu"
  layer_types: tuple[str, ...] = ()
  global_rope_theta: float = 160_000.0
  local_rope_theta: float = 10_000.0
  attention_impl: str | None = None

  def __post_init__(self):
    config_fields.check_types(self)
    config_fields.check_positive_ints(
        self, ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
               "local_attention"))
    if self.hidden_size % self.num_heads or self.head_dim % 2:
      raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by num_heads"
                        f" {self.num_heads} into an even head_dim (RoPE)")
    for name in ("hidden_act", "classifier_activation"):
      if getattr(self, name) not in ACTIVATIONS:
        raise ConfigError(f"{name} {getattr(self, name)!r} is not supported;"
                          f" supported: {sorted(ACTIVATIONS)}")
    if len(self.layer_types) != self.num_layers or set(self.layer_types) - {GLOBAL, LOCAL}:
      raise ConfigError(f"layer_types {list(self.layer_types)} must give each of the"
                        f" {self.num_layers} layers {GLOBAL!r} or {LOCAL!r}")
    if self.classifier_pooling not in POOLINGS:
      raise ConfigError(f"classifier_pooling {self.classifier_pooling!r} is not one of"
                        f" {list(POOLINGS)}")
    config_fields.check_attention_impl(self)
    config_fields.check_dropout(self, ("hidden_dropout", "attention_dropout",
                                       "embedding_dropout", "classifier_dropout"))

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def window(self) -> int:
    """A local layer's query i sees keys j with |i - j| <= window."""
    return self.local_attention // 2

  @classmethod
  def from_hf(cls, d: Mapping[str, Any], **runtime_options: Any) -> Config:
    """A Config from an HF config.json dict; `runtime_options` (RUNTIME_OPTIONS) replace
    what the file says."""
    unknown = sorted(set(runtime_options) - set(RUNTIME_OPTIONS))
    if unknown:
      raise ConfigError(f"{unknown} are not runtime options of a ModernBERT encoder;"
                        f" those are {list(RUNTIME_OPTIONS)}")
    if d.get("model_type", MODEL_TYPE) != MODEL_TYPE:
      raise ConfigError(f"model_type {d.get('model_type')!r} is not {MODEL_TYPE!r}")
    if d.get("rope_scaling"):
      raise ConfigError(f"rope_scaling {d['rope_scaling']!r} is not supported")
    kwargs = config_fields.hf_kwargs(d, _HF_FIELDS)
    layers = kwargs["num_layers"]
    types = d.get("layer_types")
    if types is None:
      every = d.get("global_attn_every_n_layers", 3)
      types = [LOCAL if i % every else GLOBAL for i in range(layers)]
    rope = d.get("rope_parameters") or {}
    thetas = {}
    for kind, legacy, default in ((GLOBAL, "global_rope_theta", 160_000.0),
                                  (LOCAL, "local_rope_theta", 10_000.0)):
      params = rope.get(kind) or {}
      if params.get("rope_type", "default") != "default":
        raise ConfigError(f"rope_parameters[{kind!r}] rope_type {params['rope_type']!r} is"
                          " not supported; only 'default'")
      thetas[legacy] = float(params.get("rope_theta", d.get(legacy, default)))
    if "hidden_dropout" in runtime_options:
      kwargs["embedding_dropout"] = runtime_options["hidden_dropout"]
    return cls(**{**kwargs, **runtime_options}, layer_types=tuple(types), **thetas)

  def to_hf(self) -> dict[str, Any]:
    """The HF config.json fields (without architectures/labels), with the layer pattern
    and RoPE thetas both as transformers 5 writes them and in the older keys."""
    d = config_fields.hf_dict(self, _HF_FIELDS)
    d["model_type"] = MODEL_TYPE
    d["layer_types"] = list(self.layer_types)
    d["rope_parameters"] = {
        GLOBAL: {"rope_type": "default", "rope_theta": self.global_rope_theta},
        LOCAL: {"rope_type": "default", "rope_theta": self.local_rope_theta}}
    d["global_rope_theta"], d["local_rope_theta"] = self.global_rope_theta, self.local_rope_theta
    for every in range(1, self.num_layers + 1):
      if all((t == GLOBAL) == (i % every == 0) for i, t in enumerate(self.layer_types)):
        d["global_attn_every_n_layers"] = every
        break
    return d
