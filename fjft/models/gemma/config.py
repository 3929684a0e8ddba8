"""The architecture of a Gemma, Gemma 2 or Gemma 3 (text) decoder, read from and written
to HF config.json (transformers 4 and 5 spellings), plus the runtime options of a run."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from fjft.errors import ConfigError
from fjft.models import config_fields
from fjft.models.config_fields import REQUIRED
from fjft.models.layers.activations import ACTIVATIONS

log = logging.getLogger("fjft.models.gemma")

MODEL_TYPES = ("gemma", "gemma2", "gemma3_text")
ARCHITECTURES = {"gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM",
                 "gemma3_text": "Gemma3ForCausalLM"}
SLIDING, FULL = "sliding_attention", "full_attention"

# (Config field, HF config.json key, default) read by Config.from_hf for every type;
# defaults are transformers' class defaults (a config.json may omit them).
_HF_FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("vocab_size", "vocab_size", REQUIRED),
    ("hidden_size", "hidden_size", REQUIRED),
    ("intermediate_size", "intermediate_size", REQUIRED),
    ("num_layers", "num_hidden_layers", REQUIRED),
    ("num_heads", "num_attention_heads", REQUIRED),
    ("num_kv_heads", "num_key_value_heads", None),
    ("head_dim", "head_dim", 256),
    ("rms_norm_eps", "rms_norm_eps", 1e-6),
    ("max_position_embeddings", "max_position_embeddings", 8192),
    ("tie_word_embeddings", "tie_word_embeddings", True),
    ("attention_bias", "attention_bias", False),
    ("bos_token_id", "bos_token_id", 2),
    ("eos_token_id", "eos_token_id", 1),
    ("pad_token_id", "pad_token_id", 0),
    ("initializer_range", "initializer_range", 0.02),
)
# Gemma 2 and 3 only, with each type's defaults.
_SANDWICH_FIELDS = ("query_pre_attn_scalar", "sliding_window", "attn_logit_softcapping",
                    "final_logit_softcapping")
_SANDWICH_DEFAULTS = {"gemma2": (256, 4096, 50.0, 30.0),
                      "gemma3_text": (256, 4096, None, None)}


def _rope(params: Mapping[str, Any] | None, theta: float, what: str
          ) -> tuple[float, dict | None]:
  """(theta, scaling) of one HF RoPE dict; only default and linear RoPE are supported."""
  params = dict(params or {})
  theta = float(params.pop("rope_theta", theta))
  kind = params.pop("rope_type", params.pop("type", "default"))
  if params.pop("partial_rotary_factor", 1.0) != 1.0:
    raise ConfigError(f"{what}: partial_rotary_factor != 1 is not supported")
  if kind == "default":
    return theta, None
  if kind != "linear" or "factor" not in params:
    raise ConfigError(f"{what}: rope type {kind!r} ({params}) is not supported; supported:"
                      " default, linear (with a factor)")
  return theta, {"rope_type": "linear", "factor": float(params["factor"])}


def _gemma3_rope(d: Mapping[str, Any]) -> tuple[float, dict | None, float]:
  """(global theta, global scaling, local theta) of a Gemma 3 config: transformers 5's
  rope_parameters per layer type, or the older rope_theta / rope_scaling /
  rope_local_base_freq."""
  nested = d.get("rope_parameters") or {}
  if nested and FULL not in nested and SLIDING not in nested:
    nested = {FULL: nested}
  full = dict(nested.get(FULL) or {})
  full.update(d.get("rope_scaling") or {})  # as transformers merges an old rope_scaling
  theta, scaling = _rope(full, d.get("rope_theta", 1_000_000.0), "rope of the global layers")
  local, local_scaling = _rope(nested.get(SLIDING), d.get("rope_local_base_freq", 10_000.0),
                               "rope of the sliding layers")
  if local_scaling is not None:
    raise ConfigError(f"rope scaling {local_scaling} of the sliding layers is not supported")
  return theta, scaling, local


@dataclasses.dataclass(frozen=True)
class Config(config_fields.DecoderRuntime):
  """Architecture of a Gemma-family decoder, plus runtime options.

  Checkpoint fields mirror HF GemmaConfig / Gemma2Config / Gemma3TextConfig. None for
  num_kv_heads means num_heads.

  hidden_act: the MLP's activation (HF's hidden_act for gemma, hidden_activation
    for gemma2 / gemma3_text; Gemma's legacy "gelu" means the tanh approximation).
  rope_theta, rope_scaling: RoPE of every layer (gemma, gemma2) or of the global
    layers (gemma3_text); rope_scaling None or {"rope_type": "linear", "factor": f}.
  rope_local_theta: gemma3_text's RoPE base of the sliding layers (else None).
  query_pre_attn_scalar: attention logits are scaled by its -1/2 power (gemma2,
    gemma3_text; gemma scales by head_dim's).
  sliding_window: the window of the layers whose layer_types entry is
    "sliding_attention" (keys within the last W slots); layer_types: one entry per
    layer, "sliding_attention" or "full_attention" (all full for gemma).
  attn_logit_softcapping, final_logit_softcapping: cap * tanh(x / cap) on attention
    logits (gemma2 only: transformers' Gemma 3 ignores it, so fjft does too) and on
    the output logits; None: none.

  The runtime options (attention_impl, scan_layers, remat, dropout rates) are
  config_fields.DecoderRuntime's.
  """

  # Gemma's MLP has no biases (llama's MLP, reused, asks).
  mlp_bias: ClassVar[bool] = False

  vocab_size: int = 256000
  hidden_size: int = 3072
  intermediate_size: int = 24576
  num_layers: int = 28
  num_heads: int = 16
  num_kv_heads: int | None = None
  head_dim: int = 256
  rms_norm_eps: float = 1e-6
  rope_theta: float = 10000.0
  rope_scaling: dict[str, Any] | None = None
  rope_local_theta: float | None = None
  max_position_embeddings: int = 8192
  tie_word_embeddings: bool = True
  attention_bias: bool = False
  hidden_act: str = "gelu_pytorch_tanh"
  query_pre_attn_scalar: float | None = None
  sliding_window: int | None = None
  layer_types: tuple[str, ...] | None = None
  attn_logit_softcapping: float | None = None
  final_logit_softcapping: float | None = None
  model_type: str = "gemma"
  bos_token_id: int | None = 2
  eos_token_id: int | tuple[int, ...] | None = 1
  pad_token_id: int | None = 0
  initializer_range: float = 0.02

  def __post_init__(self):
    def fix(name, value):
      object.__setattr__(self, name, value)

    if self.model_type not in MODEL_TYPES:
      raise ConfigError(f"model_type {self.model_type!r} is not a Gemma-family type this"
                        f" module implements; supported: {list(MODEL_TYPES)}")
    config_fields.check_positive_ints(
        self, ("vocab_size", "hidden_size", "intermediate_size", "num_layers",
               "num_heads", "head_dim", "max_position_embeddings"))
    if self.num_kv_heads is None:
      fix("num_kv_heads", self.num_heads)
    if self.num_heads % self.num_kv_heads:
      raise ConfigError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads"
                        f" {self.num_kv_heads}")
    if self.head_dim % 2:
      raise ConfigError(f"head_dim must be even for RoPE, got {self.head_dim}")
    if self.hidden_act not in ACTIVATIONS:
      raise ConfigError(f"hidden activation {self.hidden_act!r} is not supported;"
                        f" supported: {sorted(ACTIVATIONS)}")
    if isinstance(self.eos_token_id, list):
      fix("eos_token_id", tuple(self.eos_token_id))
    if self.rope_scaling is not None:
      fix("rope_scaling", _rope(self.rope_scaling, self.rope_theta, "rope_scaling")[1])
    gemma3 = self.model_type == "gemma3_text"
    if gemma3 != (self.rope_local_theta is not None):
      raise ConfigError("rope_local_theta is gemma3_text's (and it needs one)")
    if self.model_type == "gemma":
      sandwich = [f for f in _SANDWICH_FIELDS if getattr(self, f) is not None]
      if sandwich or self.layer_types is not None:
        raise ConfigError(f"gemma has no {sandwich or ['layer_types']} (gemma2 has)")
      return config_fields.check_runtime_options(self, ("attention_dropout",
                                                        "hidden_dropout"))
    if self.query_pre_attn_scalar is None or self.query_pre_attn_scalar <= 0:
      raise ConfigError(f"query_pre_attn_scalar must be > 0, got"
                        f" {self.query_pre_attn_scalar!r}")
    types = self.layer_types
    if types is None:  # transformers' default: gemma2 alternates, gemma3 every 6th global
      every = 6 if gemma3 else 2
      types = tuple(SLIDING if (i + 1) % every else FULL for i in range(self.num_layers))
    fix("layer_types", tuple(types))
    if len(self.layer_types) != self.num_layers or set(self.layer_types) - {SLIDING, FULL}:
      raise ConfigError(f"layer_types must hold {self.num_layers} entries, each {SLIDING!r}"
                        f" or {FULL!r}; got {list(self.layer_types)}")
    if SLIDING in self.layer_types:
      config_fields.check_positive_ints(self, ("sliding_window",))
    for cap in ("attn_logit_softcapping", "final_logit_softcapping"):
      if getattr(self, cap) is not None and getattr(self, cap) <= 0:
        raise ConfigError(f"{cap} must be > 0 or None, got {getattr(self, cap)!r}")
    config_fields.check_runtime_options(self, ("attention_dropout", "hidden_dropout"))

  # rope_scaling is a dict, so the generated hash would fail; nnx graphdefs
  # (and so jit caches) hash the Config.
  def __hash__(self):   # see config_fields.hash_fields
    return config_fields.hash_fields(self)

  @property
  def output_bias(self) -> bool:
    """Whether o_proj has a bias: attention_bias covers all four projections."""
    return self.attention_bias

  @property
  def sandwich_norms(self) -> bool:
    """Norms after attention and the MLP too (Gemma 2 and 3)."""
    return self.model_type != "gemma"

  @property
  def qk_norm(self) -> bool:
    return self.model_type == "gemma3_text"

  @property
  def attention_scale(self) -> float:
    return (self.head_dim if self.query_pre_attn_scalar is None
            else self.query_pre_attn_scalar) ** -0.5

  @property
  def attention_softcap(self) -> float | None:
    return self.attn_logit_softcapping if self.model_type == "gemma2" else None

  def sliding_layers(self) -> tuple[bool, ...]:
    """Whether each layer attends within sliding_window."""
    return tuple(t == SLIDING for t in self.layer_types or ())

  @classmethod
  def from_hf(cls, d: Mapping[str, Any], **runtime_options: Any) -> Config:
    """Builds a Config from the dict of an HF config.json (transformers 4 or 5)."""
    model_type = d.get("model_type")
    if model_type not in MODEL_TYPES:
      raise ConfigError(f"model_type {model_type!r} is not supported by fjft.models.gemma;"
                        f" supported: {list(MODEL_TYPES)}")
    if d.get("use_bidirectional_attention"):
      raise ConfigError("use_bidirectional_attention=true is not supported (a causal LM)")
    if d.get("partial_rotary_factor") not in (None, 1.0):
      raise ConfigError("partial_rotary_factor != 1 is not supported")
    kwargs = config_fields.hf_kwargs(d, _HF_FIELDS)
    if model_type == "gemma":
      # transformers reads hidden_act, and takes Gemma's legacy "gelu" for the tanh form.
      act = d.get("hidden_act", "gelu_pytorch_tanh")
      kwargs["hidden_act"] = "gelu_pytorch_tanh" if act == "gelu" else act
      kwargs["rope_theta"], kwargs["rope_scaling"] = _rope(
          d.get("rope_scaling") or d.get("rope_parameters"), d.get("rope_theta", 10000.0),
          "rope")
      return cls(model_type=model_type, **kwargs, **runtime_options)
    kwargs["hidden_act"] = d.get("hidden_activation") or "gelu_pytorch_tanh"
    for f, default in zip(_SANDWICH_FIELDS, _SANDWICH_DEFAULTS[model_type]):
      kwargs[f] = d.get(f, default)
    kwargs["layer_types"] = d.get("layer_types")
    if model_type == "gemma2":
      kwargs["rope_theta"], kwargs["rope_scaling"] = _rope(
          d.get("rope_scaling") or d.get("rope_parameters"), d.get("rope_theta", 10000.0),
          "rope")
    else:
      if kwargs["layer_types"] is None:
        every = d.get("sliding_window_pattern", 6)
        kwargs["layer_types"] = [SLIDING if (i + 1) % every else FULL
                                 for i in range(kwargs["num_layers"])]
      if kwargs["attn_logit_softcapping"] is not None:
        log.info("attn_logit_softcapping=%s: transformers' Gemma 3 does not apply it, nor"
                 " does fjft", kwargs["attn_logit_softcapping"])
      (kwargs["rope_theta"], kwargs["rope_scaling"],
       kwargs["rope_local_theta"]) = _gemma3_rope(d)
    return cls(model_type=model_type, **kwargs, **runtime_options)

  def to_hf(self) -> dict[str, Any]:
    """The HF config.json fields (transformers 5's RoPE spelling and the older one)."""
    d = config_fields.hf_dict(self, _HF_FIELDS)
    if isinstance(d["eos_token_id"], tuple):
      d["eos_token_id"] = list(d["eos_token_id"])
    scaling = None if self.rope_scaling is None else dict(self.rope_scaling)
    rope = {"rope_type": "default", **(scaling or {}), "rope_theta": self.rope_theta}
    d.update(model_type=self.model_type, architectures=[ARCHITECTURES[self.model_type]],
             rope_theta=self.rope_theta, rope_scaling=scaling, rope_parameters=rope)
    if self.model_type == "gemma":
      d["hidden_act"] = self.hidden_act
      return d
    d["hidden_activation"] = self.hidden_act
    d.update({f: getattr(self, f) for f in _SANDWICH_FIELDS},
             layer_types=list(self.layer_types))
    if self.model_type == "gemma3_text":
      d.update(rope_local_base_freq=self.rope_local_theta, rope_parameters={
          FULL: rope, SLIDING: {"rope_type": "default", "rope_theta": self.rope_local_theta}})
    return d
