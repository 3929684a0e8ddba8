"""The architecture of GPT-2, read from and written to HF config.json, plus the
runtime options of a run."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from fjft.errors import ConfigError
from fjft.models import config_fields
from fjft.models.config_fields import REQUIRED
from fjft.models.layers.activations import ACTIVATIONS

# (Config field, HF config.json key, default). Defaults are HF GPT2Config's.
_HF_FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("vocab_size", "vocab_size", REQUIRED),
    ("hidden_size", "n_embd", REQUIRED),
    ("num_layers", "n_layer", REQUIRED),
    ("num_heads", "n_head", REQUIRED),
    ("intermediate_size", "n_inner", None),
    ("max_position_embeddings", "n_positions", 1024),
    ("layer_norm_eps", "layer_norm_epsilon", 1e-5),
    ("activation_function", "activation_function", "gelu_new"),
    ("bos_token_id", "bos_token_id", 50256),
    ("eos_token_id", "eos_token_id", 50256),
    ("pad_token_id", "pad_token_id", None),
    ("initializer_range", "initializer_range", 0.02),
)

# HF options that change the math in ways this module does not implement:
# key -> the only value accepted.
_FIXED_HF_OPTIONS = {"scale_attn_weights": True,
                     "scale_attn_by_inverse_layer_idx": False,
                     "add_cross_attention": False,
                     "tie_word_embeddings": True}


@dataclasses.dataclass(frozen=True)
class Config(config_fields.DecoderRuntime):
  """GPT-2 architecture (defaults: gpt2 small) plus runtime options.

  intermediate_size None means 4 * hidden_size (HF n_inner=None).
  Runtime options (not in config.json): attention_impl, scan_layers, remat
  as in fjft.models.llama.Config; embedding_dropout, attention_dropout and
  hidden_dropout (HF embd_pdrop, attn_pdrop, resid_pdrop) default to 0 and
  are not read from the checkpoint's config.
  """

  vocab_size: int = 50257
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int | None = None
  max_position_embeddings: int = 1024
  layer_norm_eps: float = 1e-5
  activation_function: str = "gelu_new"
  model_type: str = "gpt2"
  bos_token_id: int | None = 50256
  eos_token_id: int | None = 50256
  pad_token_id: int | None = None
  initializer_range: float = 0.02
  # A runtime option besides config_fields.DecoderRuntime's (HF embd_pdrop).
  embedding_dropout: float = 0.0

  def __post_init__(self):
    if self.model_type != "gpt2":
      raise ConfigError(f"model_type {self.model_type!r} is not 'gpt2'")
    config_fields.check_positive_ints(
        self, ("vocab_size", "hidden_size", "num_layers", "num_heads",
               "max_position_embeddings"))
    if self.intermediate_size is None:
      object.__setattr__(self, "intermediate_size", 4 * self.hidden_size)
    if self.hidden_size % self.num_heads:
      raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by"
                        f" num_heads {self.num_heads}")
    if self.activation_function not in ACTIVATIONS:
      raise ConfigError(f"activation_function {self.activation_function!r}"
                        f" is not supported; supported: {sorted(ACTIVATIONS)}")
    config_fields.check_runtime_options(
        self, ("embedding_dropout", "attention_dropout", "hidden_dropout"))

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @classmethod
  def from_hf(cls, d: Mapping[str, Any], **runtime_options: Any) -> Config:
    """Builds a Config from the dict of an HF GPT-2 config.json."""
    if d.get("model_type") != "gpt2":
      raise ConfigError(f"model_type {d.get('model_type')!r} is not 'gpt2'")
    kwargs = config_fields.hf_kwargs(d, _HF_FIELDS)
    for key, wanted in _FIXED_HF_OPTIONS.items():
      if d.get(key, wanted) != wanted:
        raise ConfigError(f"{key}={d[key]!r} is not supported (only"
                          f" {wanted!r})")
    return cls(**kwargs, **runtime_options)

  def to_hf(self) -> dict[str, Any]:
    """The HF config.json fields (dropout rates are the runtime ones)."""
    d = config_fields.hf_dict(self, _HF_FIELDS)
    d.update(model_type="gpt2", architectures=["GPT2LMHeadModel"],
             embd_pdrop=self.embedding_dropout,
             attn_pdrop=self.attention_dropout,
             resid_pdrop=self.hidden_dropout, **_FIXED_HF_OPTIONS)
    return d
