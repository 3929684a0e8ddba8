"""The architecture of a Llama-family decoder, read from and written to HF config.json
(any transformers version's RoPE spelling), plus the runtime options of a run."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from fjft.errors import ConfigError
from fjft.models import config_fields
from fjft.models.config_fields import REQUIRED

log = logging.getLogger("fjft.models.llama")


# (Config field, HF config.json key, default) read by Config.from_hf.
_HF_FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("vocab_size", "vocab_size", REQUIRED),
    ("hidden_size", "hidden_size", REQUIRED),
    ("intermediate_size", "intermediate_size", REQUIRED),
    ("num_layers", "num_hidden_layers", REQUIRED),
    ("num_heads", "num_attention_heads", REQUIRED),
    ("num_kv_heads", "num_key_value_heads", None),
    ("head_dim", "head_dim", None),
    ("rms_norm_eps", "rms_norm_eps", 1e-6),
    ("max_position_embeddings", "max_position_embeddings", 2048),
    ("tie_word_embeddings", "tie_word_embeddings", False),
    ("mlp_bias", "mlp_bias", False),
    ("hidden_act", "hidden_act", "silu"),
    ("bos_token_id", "bos_token_id", None),
    ("eos_token_id", "eos_token_id", None),
    ("pad_token_id", "pad_token_id", None),
    ("initializer_range", "initializer_range", 0.02),
)

MODEL_TYPES = ("llama", "mistral", "qwen2")
_ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                  "qwen2": "Qwen2ForCausalLM"}
_ROPE_KEYS = {"linear": ("factor",),
              "llama3": ("factor", "low_freq_factor", "high_freq_factor",
                         "original_max_position_embeddings")}


def _rope_from_hf(d: Mapping[str, Any]) -> tuple[float, dict | None]:
  """(rope_theta, rope_scaling) from an HF config of any version.

  transformers >= 5 writes `rope_parameters` (theta inside); older configs
  (most hub checkpoints) write `rope_theta` and `rope_scaling`, whose type
  key may be "type" rather than "rope_type".
  """
  params = dict(d.get("rope_scaling") or d.get("rope_parameters") or {})
  theta = params.pop("rope_theta", None)
  if theta is None:
    theta = d.get("rope_theta", 10000.0)
  kind = params.pop("rope_type", params.pop("type", "default"))
  if params.get("partial_rotary_factor", 1.0) != 1.0:
    raise ConfigError("partial_rotary_factor != 1 is not supported")
  params.pop("partial_rotary_factor", None)
  if kind == "default":
    return float(theta), None
  if kind == "llama3":
    params.setdefault("original_max_position_embeddings",
                      d.get("max_position_embeddings", 2048))
  return float(theta), {"rope_type": kind, **params}


def checked_rope_scaling(scaling: Mapping[str, Any]) -> dict:
  """rope_scaling with its type under "rope_type" (older configs say "type"); an
  unsupported type, or one lacking its keys, is a ConfigError."""
  scaling = dict(scaling)
  kind = scaling.get("rope_type", scaling.get("type"))
  if kind not in _ROPE_KEYS:
    raise ConfigError(f"rope_scaling type {kind!r} is not supported;"
                      f" supported: {sorted(_ROPE_KEYS)} (or None)")
  missing = [k for k in _ROPE_KEYS[kind] if k not in scaling]
  if missing:
    raise ConfigError(f"rope_scaling of type {kind!r} lacks {missing}")
  scaling.pop("type", None)
  scaling["rope_type"] = kind
  return scaling


@dataclasses.dataclass(frozen=True)
class Config(config_fields.DecoderRuntime):
  """Architecture of a Llama-family decoder, plus runtime options.

  Checkpoint fields mirror HF LlamaConfig (defaults are Llama 2 7B's where a
  checkpoint may omit them). None for num_kv_heads / head_dim / attention_bias
  means: num_heads / hidden_size // num_heads / True only for qwen2.

  rope_scaling: None, {"rope_type": "linear", "factor": f} or
    {"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
    "original_max_position_embeddings"}; other types are rejected.
  sliding_window: Mistral's window (keys within the last W slots), or None.

  The runtime options (attention_impl, scan_layers, remat, dropout rates) are
  config_fields.DecoderRuntime's.
  """

  vocab_size: int = 32000
  hidden_size: int = 4096
  intermediate_size: int = 11008
  num_layers: int = 32
  num_heads: int = 32
  num_kv_heads: int | None = None
  head_dim: int | None = None
  rms_norm_eps: float = 1e-6
  rope_theta: float = 10000.0
  rope_scaling: dict[str, Any] | None = None
  max_position_embeddings: int = 2048
  tie_word_embeddings: bool = False
  attention_bias: bool | None = None
  mlp_bias: bool = False
  sliding_window: int | None = None
  hidden_act: str = "silu"
  model_type: str = "llama"
  bos_token_id: int | None = 1
  eos_token_id: int | tuple[int, ...] | None = 2
  pad_token_id: int | None = None
  initializer_range: float = 0.02

  def __post_init__(self):
    def fix(name, value):
      object.__setattr__(self, name, value)

    if self.model_type not in MODEL_TYPES:
      raise ConfigError(f"model_type {self.model_type!r} is not a Llama-family"
                        f" type this module implements; supported:"
                        f" {list(MODEL_TYPES)}")
    config_fields.check_positive_ints(
        self, ("vocab_size", "hidden_size", "intermediate_size", "num_layers",
               "num_heads", "max_position_embeddings"))
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
    if self.head_dim % 2:
      raise ConfigError(f"head_dim must be even for RoPE, got {self.head_dim}")
    fixed_bias = {"qwen2": True, "mistral": False}.get(self.model_type)
    if self.attention_bias is None:
      fix("attention_bias", bool(fixed_bias))
    elif fixed_bias is not None and self.attention_bias != fixed_bias:
      raise ConfigError(f"{self.model_type} has attention_bias={fixed_bias}"
                        " by definition")
    if self.mlp_bias and self.model_type != "llama":
      raise ConfigError(f"mlp_bias is a llama option; {self.model_type} has"
                        " none")
    if self.sliding_window is not None and self.model_type != "mistral":
      raise ConfigError("sliding_window is supported for mistral only")
    if self.hidden_act != "silu":
      raise ConfigError(f"hidden_act {self.hidden_act!r} is not supported;"
                        " only 'silu'")
    if isinstance(self.eos_token_id, list):
      fix("eos_token_id", tuple(self.eos_token_id))
    if self.rope_scaling is not None:
      fix("rope_scaling", checked_rope_scaling(self.rope_scaling))
    config_fields.check_runtime_options(self, ("attention_dropout", "hidden_dropout"))

  def __hash__(self):   # rope_scaling is a dict: see config_fields.hash_fields
    return config_fields.hash_fields(self)

  @property
  def output_bias(self) -> bool:
    """Whether o_proj has a bias: Llama's attention_bias covers it, Qwen2's not."""
    return self.attention_bias and self.model_type == "llama"

  @classmethod
  def from_hf(cls, d: Mapping[str, Any], **runtime_options: Any) -> Config:
    """Builds a Config from the dict of an HF config.json (any version)."""
    model_type = d.get("model_type")
    if model_type not in MODEL_TYPES:
      raise ConfigError(f"model_type {model_type!r} is not supported by"
                        f" fjft.models.llama; supported: {list(MODEL_TYPES)}")
    kwargs = config_fields.hf_kwargs(d, _HF_FIELDS)
    if kwargs["num_kv_heads"] is None:
      kwargs["num_kv_heads"] = kwargs["num_heads"]
    kwargs["rope_theta"], kwargs["rope_scaling"] = _rope_from_hf(d)
    if model_type == "llama":
      kwargs["attention_bias"] = bool(d.get("attention_bias", False))
    if model_type == "mistral":
      kwargs["sliding_window"] = d.get("sliding_window")
    if model_type == "qwen2" and d.get("use_sliding_window"):
      raise ConfigError("qwen2 with use_sliding_window=true is not supported")
    if d.get("pretraining_tp", 1) != 1:
      # A sliced-matmul emulation in HF; with tp == 1 it is the plain math.
      log.info("ignoring pretraining_tp=%s", d["pretraining_tp"])
    return cls(model_type=model_type, **kwargs, **runtime_options)

  def to_hf(self) -> dict[str, Any]:
    """The HF config.json fields (old and new RoPE spellings both written)."""
    d = config_fields.hf_dict(self, _HF_FIELDS)
    if isinstance(d["eos_token_id"], tuple):
      d["eos_token_id"] = list(d["eos_token_id"])
    scaling = None if self.rope_scaling is None else dict(self.rope_scaling)
    d.update(
        model_type=self.model_type,
        architectures=[_ARCHITECTURES[self.model_type]],
        rope_theta=self.rope_theta,
        rope_scaling=scaling,
        rope_parameters={"rope_type": "default", **(scaling or {}),
                         "rope_theta": self.rope_theta})
    if self.model_type == "llama":
      d["attention_bias"] = self.attention_bias
    else:
      del d["mlp_bias"]
    if self.model_type == "mistral":
      d["sliding_window"] = self.sliding_window
    if self.model_type == "qwen2":
      d.update(use_sliding_window=False, sliding_window=None)
    return d
