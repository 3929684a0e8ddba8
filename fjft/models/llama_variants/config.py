"""The architecture of a Qwen3, OLMo 2, Granite or SmolLM3 decoder, read from and written
to HF config.json, plus the runtime options of a run.

Each is Llama's architecture with a few switches, which this one Config holds (derived
from the model_type, or read from the fields only that model_type's config.json has):
  qwen3    RMSNorm on q and k over each head's head_dim, before RoPE.
  olmo2    RMSNorm on q and k over the whole projected q / k, and norms after the
           attention and the MLP (inside the residual) instead of before.
  granite  embedding_multiplier, residual_multiplier, attention_multiplier (the
           attention's scale) and logits_scaling (logits divided by it).
  smollm3  rope_layers: which layers rotate q and k (the others are NoPE layers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from fjft.errors import ConfigError
from fjft.models import config_fields
from fjft.models.config_fields import REQUIRED
from fjft.models.llama.config import _rope_from_hf, checked_rope_scaling

MODEL_TYPES = ("qwen3", "olmo2", "granite", "smollm3")
ARCHITECTURES = {"qwen3": "Qwen3ForCausalLM", "olmo2": "Olmo2ForCausalLM",
                 "granite": "GraniteForCausalLM", "smollm3": "SmolLM3ForCausalLM"}
# The q/k norm of each model_type: over each head ("head") or the whole projection ("full").
QK_NORM = {"qwen3": "head", "olmo2": "full"}
_DEFAULT_THETA = {"smollm3": 2000000.0}

# (Config field, HF config.json key, default) read by Config.from_hf for every model_type.
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
    ("attention_bias", "attention_bias", False),
    ("hidden_act", "hidden_act", "silu"),
    ("bos_token_id", "bos_token_id", None),
    ("eos_token_id", "eos_token_id", None),
    ("pad_token_id", "pad_token_id", None),
    ("initializer_range", "initializer_range", 0.02),
)
# Fields only some model_types' config.json has.
_MLP_BIAS = (("mlp_bias", "mlp_bias", False),)
_GRANITE = (("embedding_multiplier", "embedding_multiplier", 1.0),
            ("residual_multiplier", "residual_multiplier", 1.0),
            ("attention_multiplier", "attention_multiplier", 1.0),
            ("logits_scaling", "logits_scaling", 1.0))
_EXTRA = {"granite": _MLP_BIAS + _GRANITE, "smollm3": _MLP_BIAS}


def _no_sliding_window(d: Mapping[str, Any], model_type: str) -> None:
  types = d.get("layer_types") or ()
  if (d.get("use_sliding_window") and d.get("sliding_window") is not None) or (
      "sliding_attention" in types):
    raise ConfigError(f"{model_type} with sliding-window layers (use_sliding_window,"
                      " sliding_window, layer_types) is not supported")


def _rope_layers(d: Mapping[str, Any], num_layers: int) -> tuple[bool, ...]:
  """SmolLM3's no_rope_layers (1: the layer uses RoPE), or every
  no_rope_layer_interval-th layer without, as transformers derives them."""
  flags = d.get("no_rope_layers")
  if flags is None:
    interval = d.get("no_rope_layer_interval", 4)
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
      raise ConfigError(f"no_rope_layer_interval must be a positive int, got {interval!r}")
    return tuple((i + 1) % interval != 0 for i in range(num_layers))
  if len(flags) < num_layers or any(f not in (0, 1) for f in flags):
    raise ConfigError(f"no_rope_layers must hold a 0 or 1 for each of the {num_layers}"
                      f" layers, got {flags!r}")
  return tuple(bool(f) for f in flags[:num_layers])


@dataclasses.dataclass(frozen=True)
class Config(config_fields.DecoderRuntime):
  """Architecture of a Qwen3 / OLMo 2 / Granite / SmolLM3 decoder, plus runtime options.

  Fields as llama.Config's (attention_bias covers q, k, v and o, as LlamaAttention),
  and:
  embedding_multiplier, residual_multiplier, logits_scaling: Granite's (1 otherwise).
  attention_multiplier: the attention's scale; None: head_dim ** -0.5.
  rope_layers: SmolLM3's, per layer, whether it applies RoPE (None for the others).
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
  attention_bias: bool = False
  mlp_bias: bool = False
  hidden_act: str = "silu"
  model_type: str = "qwen3"
  bos_token_id: int | None = None
  eos_token_id: int | tuple[int, ...] | None = None
  pad_token_id: int | None = None
  initializer_range: float = 0.02
  embedding_multiplier: float = 1.0
  residual_multiplier: float = 1.0
  attention_multiplier: float | None = None
  logits_scaling: float = 1.0
  rope_layers: tuple[bool, ...] | None = None

  def __post_init__(self):
    def fix(name, value):
      object.__setattr__(self, name, value)

    if self.model_type not in MODEL_TYPES:
      raise ConfigError(f"model_type {self.model_type!r} is not one fjft.models."
                        f"llama_variants implements; supported: {list(MODEL_TYPES)}")
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
    if self.hidden_act != "silu":
      raise ConfigError(f"hidden_act {self.hidden_act!r} is not supported; only 'silu'")
    if self.mlp_bias and self.model_type not in ("granite", "smollm3"):
      raise ConfigError(f"mlp_bias is not an option of {self.model_type}")
    granite = {f: getattr(self, f) for f in ("embedding_multiplier", "residual_multiplier",
                                             "logits_scaling")}
    if self.attention_multiplier is not None:
      granite["attention_multiplier"] = self.attention_multiplier
    if self.model_type != "granite" and any(v != 1.0 for v in granite.values()):
      raise ConfigError(f"{sorted(granite)} are granite options, not {self.model_type}'s")
    if self.model_type == "smollm3" and self.rope_layers is None:
      fix("rope_layers", (True,) * self.num_layers)
    if self.rope_layers is not None:
      if self.model_type != "smollm3":
        raise ConfigError(f"rope_layers (NoPE layers) is a smollm3 option, not"
                          f" {self.model_type}'s")
      fix("rope_layers", tuple(bool(f) for f in self.rope_layers))
      if len(self.rope_layers) != self.num_layers:
        raise ConfigError(f"rope_layers has {len(self.rope_layers)} entries for"
                          f" {self.num_layers} layers")
    if isinstance(self.eos_token_id, list):
      fix("eos_token_id", tuple(self.eos_token_id))
    if self.rope_scaling is not None:
      fix("rope_scaling", checked_rope_scaling(self.rope_scaling))
    config_fields.check_runtime_options(self, ("attention_dropout", "hidden_dropout"))

  def __hash__(self):   # rope_scaling is a dict: see config_fields.hash_fields
    return config_fields.hash_fields(self)

  @property
  def qk_norm(self) -> str | None:
    """"head", "full" or None: where q and k are normed (QK_NORM)."""
    return QK_NORM.get(self.model_type)

  @property
  def post_norms(self) -> bool:
    """Whether the blocks norm the attention and MLP outputs (OLMo 2) instead of inputs."""
    return self.model_type == "olmo2"

  @property
  def attention_scale(self) -> float:
    return (self.head_dim ** -0.5 if self.attention_multiplier is None
            else float(self.attention_multiplier))

  @classmethod
  def from_hf(cls, d: Mapping[str, Any], **runtime_options: Any) -> Config:
    """Builds a Config from the dict of an HF config.json (any transformers version)."""
    model_type = d.get("model_type")
    if model_type not in MODEL_TYPES:
      raise ConfigError(f"model_type {model_type!r} is not supported by"
                        f" fjft.models.llama_variants; supported: {list(MODEL_TYPES)}")
    kwargs = config_fields.hf_kwargs(d, _HF_FIELDS + _EXTRA.get(model_type, ()))
    kwargs["rope_theta"], kwargs["rope_scaling"] = _rope_from_hf(d)
    if "rope_theta" not in d and "rope_theta" not in (
        d.get("rope_scaling") or d.get("rope_parameters") or {}):
      kwargs["rope_theta"] = _DEFAULT_THETA.get(model_type, 10000.0)
    if model_type in ("qwen3", "smollm3"):
      _no_sliding_window(d, model_type)
    if model_type == "smollm3":
      kwargs["rope_layers"] = _rope_layers(d, kwargs["num_layers"])
    if model_type == "olmo2" and d.get("clip_qkv") is not None:
      raise ConfigError("olmo2 with clip_qkv is not supported")
    return cls(model_type=model_type, **kwargs, **runtime_options)

  def to_hf(self) -> dict[str, Any]:
    """The HF config.json fields (old and new RoPE spellings both written)."""
    d = config_fields.hf_dict(self, _HF_FIELDS + _EXTRA.get(self.model_type, ()))
    if isinstance(d["eos_token_id"], tuple):
      d["eos_token_id"] = list(d["eos_token_id"])
    scaling = None if self.rope_scaling is None else dict(self.rope_scaling)
    d.update(model_type=self.model_type, architectures=[ARCHITECTURES[self.model_type]],
             rope_theta=self.rope_theta, rope_scaling=scaling,
             rope_parameters={"rope_type": "default", **(scaling or {}),
                              "rope_theta": self.rope_theta})
    if self.model_type == "granite":
      d["attention_multiplier"] = self.attention_scale
    if self.model_type in ("qwen3", "smollm3"):
      d.update(use_sliding_window=False, sliding_window=None)
    if self.model_type == "smollm3":
      d["no_rope_layers"] = [int(f) for f in self.rope_layers]
    return d
