"""The architecture of a Phi-3 / Phi-4 decoder (HF model_type "phi3"), read from and
written to HF config.json (old rope_scaling and new rope_parameters spellings), plus
the runtime options of a run."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from fjft.errors import ConfigError
from fjft.models import config_fields
from fjft.models.config_fields import REQUIRED

log = logging.getLogger("fjft.models.phi3")

# (Config field, HF config.json key, default: Phi3Config's) read by Config.from_hf.
_HF_FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("vocab_size", "vocab_size", REQUIRED),
    ("hidden_size", "hidden_size", REQUIRED),
    ("intermediate_size", "intermediate_size", REQUIRED),
    ("num_layers", "num_hidden_layers", REQUIRED),
    ("num_heads", "num_attention_heads", REQUIRED),
    ("num_kv_heads", "num_key_value_heads", None),
    ("head_dim", "head_dim", None),
    ("rms_norm_eps", "rms_norm_eps", 1e-5),
    ("max_position_embeddings", "max_position_embeddings", 4096),
    ("original_max_position_embeddings", "original_max_position_embeddings", 4096),
    ("tie_word_embeddings", "tie_word_embeddings", False),
    ("sliding_window", "sliding_window", None),
    ("hidden_act", "hidden_act", "silu"),
    ("bos_token_id", "bos_token_id", 1),
    ("eos_token_id", "eos_token_id", 32000),
    ("pad_token_id", "pad_token_id", 32000),
    ("initializer_range", "initializer_range", 0.02),
)

MODEL_TYPES = ("phi3",)
ARCHITECTURE = "Phi3ForCausalLM"
# Legacy names transformers reads as longrope ("su": the first 128k Phi-3 configs).
_LONGROPE_NAMES = ("longrope", "su")
_LONGROPE_OPTIONAL = ("factor", "attention_factor")
# Checkpoint fields that are run choices in fjft (config_fields.DecoderRuntime), or that
# transformers' Phi3 never applies (embd_pdrop).
_DROPOUTS = ("resid_pdrop", "embd_pdrop", "attention_dropout")
# Options of other families that Phi3 does not have: refused if set.
_FOREIGN = {"attention_bias": False, "mlp_bias": False, "use_sliding_window": False,
            "pretraining_tp": 1}


def _rope_from_hf(d: Mapping[str, Any]) -> tuple[float, float, dict | None]:
  """(rope_theta, partial_rotary_factor, rope_scaling) from an HF config of any
  version: transformers >= 5 writes `rope_parameters` (theta and the rotary
  fraction inside), older configs `rope_theta`, `partial_rotary_factor` and
  `rope_scaling` (its type under "type")."""
  params = dict(d.get("rope_scaling") or d.get("rope_parameters") or {})
  theta = params.pop("rope_theta", None)
  theta = d.get("rope_theta", 10000.0) if theta is None else theta
  fraction = params.pop("partial_rotary_factor", None)
  fraction = d.get("partial_rotary_factor", 1.0) if fraction is None else fraction
  kind = params.pop("rope_type", params.pop("type", "default"))
  # transformers' Phi3 takes the top-level original_max_position_embeddings over this.
  params.pop("original_max_position_embeddings", None)
  if kind == "default":
    return float(theta), float(fraction), None
  return float(theta), float(fraction), {"rope_type": kind, **params}


@dataclasses.dataclass(frozen=True)
class Config(config_fields.DecoderRuntime):
  """Architecture of a Phi-3 / Phi-4 decoder, plus runtime options.

  Checkpoint fields mirror HF Phi3Config (its defaults where a checkpoint omits
  one). None for num_kv_heads / head_dim means num_heads / hidden_size // num_heads.

  partial_rotary_factor: the fraction of each head's dims that RoPE rotates (the
    first head_dim * fraction; Phi-4-mini 0.75).
  rope_scaling: None or {"rope_type": "longrope", "short_factor": [...],
    "long_factor": [...]} (rotary_dim / 2 numbers each), optionally with "factor"
    and "attention_factor" (transformers' defaults: max_position_embeddings /
    original_max_position_embeddings, and sqrt(1 + ln factor / ln original)).
  original_max_position_embeddings: the pretraining length; longrope uses its long
    factors for sequences longer than this (fjft.models.phi3.rope).
  sliding_window: keys within the last W slots (Phi-3-mini-4k), or None.

  The runtime options (attention_impl, scan_layers, remat, dropout rates) are
  config_fields.DecoderRuntime's; hidden_dropout is Phi-3's resid_pdrop.
  """

  vocab_size: int = 32064
  hidden_size: int = 3072
  intermediate_size: int = 8192
  num_layers: int = 32
  num_heads: int = 32
  num_kv_heads: int | None = None
  head_dim: int | None = None
  rms_norm_eps: float = 1e-5
  rope_theta: float = 10000.0
  partial_rotary_factor: float = 1.0
  rope_scaling: dict[str, Any] | None = None
  max_position_embeddings: int = 4096
  original_max_position_embeddings: int = 4096
  tie_word_embeddings: bool = False
  sliding_window: int | None = None
  hidden_act: str = "silu"
  model_type: str = "phi3"
  bos_token_id: int | None = 1
  eos_token_id: int | tuple[int, ...] | None = 32000
  pad_token_id: int | None = 32000
  initializer_range: float = 0.02

  def __post_init__(self):
    def fix(name, value):
      object.__setattr__(self, name, value)

    if self.model_type not in MODEL_TYPES:
      raise ConfigError(f"model_type {self.model_type!r} is not one fjft.models.phi3"
                        f" implements; supported: {list(MODEL_TYPES)}")
    config_fields.check_positive_ints(
        self, ("vocab_size", "hidden_size", "intermediate_size", "num_layers",
               "num_heads", "max_position_embeddings", "original_max_position_embeddings"))
    if self.num_kv_heads is None:
      fix("num_kv_heads", self.num_heads)
    if self.head_dim is None:
      if self.hidden_size % self.num_heads:
        raise ConfigError(f"hidden_size {self.hidden_size} is not divisible"
                          f" by num_heads {self.num_heads}; set head_dim")
      fix("head_dim", self.hidden_size // self.num_heads)
    if self.num_heads % self.num_kv_heads:
      raise ConfigError(f"num_heads {self.num_heads} is not a multiple of"
                        f" num_kv_heads {self.num_kv_heads}")
    if not 0.0 < self.partial_rotary_factor <= 1.0:
      raise ConfigError("partial_rotary_factor must be in (0, 1], got"
                        f" {self.partial_rotary_factor}")
    if self.rotary_dim % 2 or self.rotary_dim < 2:
      raise ConfigError(f"the rotary dims (head_dim {self.head_dim} * partial_rotary_factor"
                        f" {self.partial_rotary_factor} = {self.rotary_dim}) must be even")
    if self.sliding_window is not None:
      config_fields.check_positive_ints(self, ("sliding_window",))
    if self.hidden_act != "silu":
      raise ConfigError(f"hidden_act {self.hidden_act!r} is not supported; only 'silu'")
    if isinstance(self.eos_token_id, list):
      fix("eos_token_id", tuple(self.eos_token_id))
    if self.rope_scaling is not None:
      fix("rope_scaling", self._checked_scaling(dict(self.rope_scaling)))
    config_fields.check_runtime_options(self, ("attention_dropout", "hidden_dropout"))

  def _checked_scaling(self, scaling: dict[str, Any]) -> dict[str, Any]:
    kind = scaling.pop("rope_type", scaling.pop("type", None))
    if kind not in _LONGROPE_NAMES:
      raise ConfigError(f"rope_scaling type {kind!r} is not supported for phi3; supported:"
                        " 'longrope' (or 'su'), or none")
    extra = sorted(set(scaling) - {"short_factor", "long_factor", *_LONGROPE_OPTIONAL})
    if extra:
      raise ConfigError(f"longrope rope_scaling options {extra} are not supported")
    out: dict[str, Any] = {"rope_type": "longrope"}
    for name in ("short_factor", "long_factor"):
      factors = scaling.get(name)
      if (not isinstance(factors, (list, tuple))
          or not all(isinstance(x, (int, float)) for x in factors)):
        raise ConfigError(f"longrope rope_scaling needs {name}, a list of numbers")
      if len(factors) != self.rotary_dim // 2:
        raise ConfigError(f"longrope {name} has {len(factors)} numbers; the rotary dims"
                          f" need {self.rotary_dim // 2}")
      out[name] = [float(x) for x in factors]
    for name in _LONGROPE_OPTIONAL:
      if scaling.get(name) is not None:
        out[name] = float(scaling[name])
    return out

  # rope_scaling is a dict, so the generated hash would fail; nnx graphdefs
  # (and so jit caches) hash the Config.
  def __hash__(self):   # see config_fields.hash_fields
    return config_fields.hash_fields(self)

  @property
  def rotary_dim(self) -> int:
    """The dims of each head that RoPE rotates (transformers' int(head_dim * fraction))."""
    return int(self.head_dim * self.partial_rotary_factor)

  @classmethod
  def from_hf(cls, d: Mapping[str, Any], **runtime_options: Any) -> Config:
    """Builds a Config from the dict of an HF config.json (any version).

    Raises:
      ConfigError: naming an option fjft does not implement.
    """
    model_type = d.get("model_type")
    if model_type not in MODEL_TYPES:
      raise ConfigError(f"model_type {model_type!r} is not supported by"
                        f" fjft.models.phi3; supported: {list(MODEL_TYPES)}")
    foreign = sorted(k for k, off in _FOREIGN.items() if d.get(k, off) not in (off, None))
    if foreign:
      raise ConfigError(f"phi3 options {foreign} are not supported")
    kwargs = config_fields.hf_kwargs(d, _HF_FIELDS)
    if kwargs["num_kv_heads"] is None:
      kwargs["num_kv_heads"] = kwargs["num_heads"]
    (kwargs["rope_theta"], kwargs["partial_rotary_factor"],
     kwargs["rope_scaling"]) = _rope_from_hf(d)
    set_dropouts = {k: d[k] for k in _DROPOUTS if d.get(k)}
    if set_dropouts:
      log.info("the checkpoint's dropout rates %s are not applied; dropout is a run"
               " option (hidden_dropout, attention_dropout)", set_dropouts)
    return cls(model_type=model_type, **kwargs, **runtime_options)

  def to_hf(self) -> dict[str, Any]:
    """The HF config.json fields (old and new RoPE spellings both written)."""
    d = config_fields.hf_dict(self, _HF_FIELDS)
    if isinstance(d["eos_token_id"], tuple):
      d["eos_token_id"] = list(d["eos_token_id"])
    scaling = None if self.rope_scaling is None else dict(self.rope_scaling)
    parameters = {"rope_type": "default", **(scaling or {}), "rope_theta": self.rope_theta,
                  "partial_rotary_factor": self.partial_rotary_factor}
    if scaling is not None:
      parameters["original_max_position_embeddings"] = self.original_max_position_embeddings
    d.update(model_type=self.model_type, architectures=[ARCHITECTURE],
             rope_theta=self.rope_theta, partial_rotary_factor=self.partial_rotary_factor,
             rope_scaling=scaling, rope_parameters=parameters,
             resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0)
    return d
