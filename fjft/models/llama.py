"""Llama-family decoder LMs (Llama 2/3, SmolLM2, Mistral, Qwen2) in Flax NNX.

Also home of the pieces every decoder family here shares (gpt2.py imports
them): the KV `Cache`, the attention mask of a cached/padded batch, the
scan/remat layer driver, Linear, and the HF tensor-table loader.

Logical axis names (one per param dimension, in `out_sharding`):

  "vocab"     rows of the token embedding / columns of the LM head
  "embed"     the hidden (model) dimension
  "heads"     the fused num_heads * head_dim dimension of q and of o's input
  "kv_heads"  the fused num_kv_heads * head_dim dimension of k and v
  "mlp"       the feed-forward intermediate dimension
  "layers"    the leading stacked-layer axis when Config.scan_layers is True

Parameter tree (HF LlamaForCausalLM names in brackets; Linear weights are
transposed between HF's [out, in] and our [in, out]):

  embed_tokens.embedding                     [V, H]   (model.embed_tokens.weight)
  layers.{i}.input_layernorm.scale           [H]      (model.layers.{i}.input_layernorm.weight)
  layers.{i}.self_attn.q_proj.{kernel,bias}  [H, N*D] (…self_attn.q_proj.*)
  layers.{i}.self_attn.k_proj.{kernel,bias}  [H, K*D]
  layers.{i}.self_attn.v_proj.{kernel,bias}  [H, K*D]
  layers.{i}.self_attn.o_proj.{kernel,bias}  [N*D, H]
  layers.{i}.post_attention_layernorm.scale  [H]
  layers.{i}.mlp.{gate,up}_proj.kernel       [H, I]
  layers.{i}.mlp.down_proj.kernel            [I, H]
  norm.scale                                 [H]      (model.norm.weight)
  lm_head.kernel                             [H, V]   (lm_head.weight; absent when tied)

With scan_layers=True, `layers.{i}.X` becomes `layers.X` with a leading
[num_layers] axis; the checkpoint mapping is the same.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.errors import CheckpointError, ConfigError
from fjft.models.dropout import dropout
from fjft.weights import safetensors_io

log = logging.getLogger(__name__)

Axes = tuple[str | None, ...]

ATTENTION_IMPLS = (None, "xla", "cudnn")
REMAT_POLICIES = ("none", "full", "dots_saveable")


# ------------------------------------------------------- shared: KV cache ----


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Cache:
  """Keys and values of every layer, [num_layers, B, max_len, kv_heads, D].

  Slots are absolute: the model writes new tokens at `cache_index`; which
  slots hold real tokens is the caller's `kv_mask`.
  """

  k: jax.Array
  v: jax.Array


def new_cache(num_layers: int, batch: int, max_len: int, kv_heads: int,
              head_dim: int, dtype: jnp.dtype) -> Cache:
  shape = (num_layers, batch, max_len, kv_heads, head_dim)
  return Cache(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype))


# ------------------------------------------------------ shared: attention ----


def attention_mask(q_slots: jax.Array, kv_len: int, kv_mask: jax.Array | None,
                   sliding_window: int | None) -> jax.Array:
  """Boolean [B or 1, 1, T, S]: which key slots each query may attend to.

  Query t sits at slot q_slots[t]; it sees slots s <= q_slots[t] (within the
  sliding window, if any) whose kv_mask is True. Its own slot is always
  visible: real tokens have it in kv_mask anyway, and a padding query then
  never has an empty row, whose softmax would be NaN on some backends.
  """
  s = jnp.arange(kv_len)[None, :]
  q = q_slots[:, None]
  allowed = s <= q
  if sliding_window is not None:
    allowed &= s > q - sliding_window
  allowed = allowed[None]  # [1, T, S]
  if kv_mask is not None:
    allowed = allowed & (kv_mask.astype(bool)[:, None, :] | (s == q)[None])
  return allowed[:, None]


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, *,
           impl: str | None, dropout_rate: float,
           key: jax.Array | None) -> jax.Array:
  """Grouped-query attention: q [B,T,N,D], k/v [B,S,K,D] -> [B,T,N,D]."""
  k, v = k.astype(q.dtype), v.astype(q.dtype)
  if key is None or dropout_rate == 0.0:
    return jax.nn.dot_product_attention(q, k, v, mask=mask,
                                        implementation=impl)
  # jax.nn.dot_product_attention cannot drop attention probabilities, so
  # training with attention dropout runs the same math as plain XLA ops.
  b, t, n, d = q.shape
  groups = n // k.shape[2]
  qg = q.reshape(b, t, k.shape[2], groups, d)
  logits = jnp.einsum("btkgd,bskd->bkgts", qg, k,
                      preferred_element_type=jnp.float32) * d ** -0.5
  logits = jnp.where(mask[:, :, None], logits, jnp.finfo(jnp.float32).min)
  probs = dropout(jax.nn.softmax(logits, axis=-1), dropout_rate, key)
  out = jnp.einsum("bkgts,bskd->btkgd", probs.astype(v.dtype), v)
  return out.reshape(b, t, n, d)


def update_cache_layer(kv_all: jax.Array, new: jax.Array, layer: jax.Array,
                       cache_index: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Writes new [B,T,K,D] into layer `layer` at slot `cache_index`.

  Returns (the updated [L,B,M,K,D] array, that layer's [B,M,K,D] slice).
  One dynamic_update_slice on the whole array, so a donated cache is
  updated in place rather than copied per layer.
  """
  zero = jnp.zeros((), jnp.int32)
  start = (jnp.asarray(layer, jnp.int32), zero,
           jnp.asarray(cache_index, jnp.int32), zero, zero)
  kv_all = jax.lax.dynamic_update_slice(
      kv_all, new.astype(kv_all.dtype)[None], start)
  return kv_all, jax.lax.dynamic_index_in_dim(kv_all, layer, 0,
                                              keepdims=False)


# ---------------------------------------------------------- shared: layers ----


def param(rngs: nnx.Rngs, init: Callable[..., jax.Array],
          shape: tuple[int, ...], axes: Axes, stack: int | None) -> nnx.Param:
  """A float32 Param; `stack` prepends a ("layers",) axis of that size."""
  if stack is not None:
    shape, axes = (stack, *shape), ("layers", *axes)
  return nnx.Param(init(rngs.params(), shape, jnp.float32),
                   out_sharding=axes, eager_sharding=False)


def fold(key: jax.Array | None, i: int | jax.Array) -> jax.Array | None:
  return None if key is None else jax.random.fold_in(key, i)


def matmul(x: jax.Array, kernel: jax.Array, dtype: jnp.dtype,
           out_dtype: jnp.dtype | None = None) -> jax.Array:
  """x [..., in] @ kernel [in, ...] in `dtype`."""
  # Tokens flattened to one dim: the weight gradient then contracts a single
  # dim, which XLA:CPU's matmul takes transposed in place.
  lead = x.shape[:-1]
  y = jax.lax.dot_general(
      x.reshape(-1, x.shape[-1]).astype(dtype), kernel.astype(dtype),
      (((1,), (0,)), ((), ())), preferred_element_type=out_dtype)
  return y.reshape(*lead, *kernel.shape[1:])


class Linear(nnx.Module):
  """x @ kernel (+ bias); kernel [in, *out] as HF Linear.weight transposed."""

  def __init__(self, in_features: int, out_shape: tuple[int, ...],
               kernel_axes: Axes, bias_axes: Axes | None, init_std: float, *,
               stack: int | None, rngs: nnx.Rngs):
    self.kernel = param(rngs, jax.nn.initializers.normal(init_std),
                        (in_features, *out_shape), kernel_axes, stack)
    self.bias = (None if bias_axes is None else
                 param(rngs, jax.nn.initializers.zeros, out_shape, bias_axes,
                       stack))

  def __call__(self, x: jax.Array, dtype: jnp.dtype) -> jax.Array:
    y = matmul(x, self.kernel[...], dtype)
    if self.bias is not None:
      y = y + self.bias[...].astype(dtype)
    return y


def remat_policy(name: str):
  return {"full": None,
          "dots_saveable": jax.checkpoint_policies.dots_saveable}[name]


def run_layers(layers: nnx.Module, num_layers: int, scan: bool, remat: str,
               x: jax.Array, carry: Any,
               call: Callable[[nnx.Module, jax.Array, Any, jax.Array],
                              tuple[jax.Array, Any]]) -> tuple[jax.Array, Any]:
  """Applies every layer: x, carry = call(layer, x, carry, layer_index).

  `layers` is an nnx.List of layers, or (scan=True) one layer whose params
  carry a leading [num_layers] axis, run under jax.lax.scan. The layer index
  is a traced int32 in both modes, so one program serves both and dropout
  keys folded from it agree. `remat` wraps each layer in jax.checkpoint.
  """

  def apply(graphdef, state, x, carry, i):
    return call(nnx.merge(graphdef, state), x, carry, i)

  if remat != "none":
    # prevent_cse is only needed outside scan (jax's own advice).
    apply = jax.checkpoint(apply, policy=remat_policy(remat),
                           prevent_cse=not scan, static_argnums=(0,))
  if scan:
    graphdef, state = nnx.split(layers)

    def body(c, layer_state):
      x, carry, i = c
      x, carry = apply(graphdef, layer_state, x, carry, i)
      return (x, carry, i + 1), None

    (x, carry, _), _ = jax.lax.scan(
        body, (x, carry, jnp.zeros((), jnp.int32)), state, length=num_layers)
    return x, carry
  for i, layer in enumerate(layers):
    graphdef, state = nnx.split(layer)
    x, carry = apply(graphdef, state, x, carry, jnp.asarray(i, jnp.int32))
  return x, carry


# ---------------------------------------------------------------- config ----

_REQUIRED = object()

# (Config field, HF config.json key, default) read by Config.from_hf.
_HF_FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("vocab_size", "vocab_size", _REQUIRED),
    ("hidden_size", "hidden_size", _REQUIRED),
    ("intermediate_size", "intermediate_size", _REQUIRED),
    ("num_layers", "num_hidden_layers", _REQUIRED),
    ("num_heads", "num_attention_heads", _REQUIRED),
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

_MODEL_TYPES = ("llama", "mistral", "qwen2")
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


@dataclasses.dataclass(frozen=True)
class Config:
  """Architecture of a Llama-family decoder, plus runtime options.

  Checkpoint fields mirror HF LlamaConfig (defaults are Llama 2 7B's where a
  checkpoint may omit them). None for num_kv_heads / head_dim / attention_bias
  means: num_heads / hidden_size // num_heads / True only for qwen2.

  rope_scaling: None, {"rope_type": "linear", "factor": f} or
    {"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
    "original_max_position_embeddings"}; other types are rejected.
  sliding_window: Mistral's window (keys within the last W slots), or None.

  Runtime options, not read from or written to config.json:
  attention_impl: None (jax picks; XLA on CPU), "xla" or "cudnn" (GPU,
    16-bit compute_dtype); attention with dropout always runs as XLA ops.
  scan_layers: stack layer params on a leading "layers" axis and run the
    layers under jax.lax.scan (one compiled layer instead of num_layers).
  remat: "none", "full" (recompute each layer in the backward pass) or
    "dots_saveable" (keep matmul outputs, recompute the rest).
  attention_dropout, hidden_dropout: on attention probabilities and on each
    residual branch; 0 by default, as most causal-LM fine-tuning runs.
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
  # Runtime options.
  attention_impl: str | None = None
  scan_layers: bool = False
  remat: str = "none"
  attention_dropout: float = 0.0
  hidden_dropout: float = 0.0

  def __post_init__(self):
    def fix(name, value):
      object.__setattr__(self, name, value)

    if self.model_type not in _MODEL_TYPES:
      raise ConfigError(f"model_type {self.model_type!r} is not a Llama-family"
                        f" type this module implements; supported:"
                        f" {list(_MODEL_TYPES)}")
    for name in ("vocab_size", "hidden_size", "intermediate_size",
                 "num_layers", "num_heads", "max_position_embeddings"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
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
      scaling = dict(self.rope_scaling)
      kind = scaling.get("rope_type", scaling.get("type"))
      if kind not in _ROPE_KEYS:
        raise ConfigError(f"rope_scaling type {kind!r} is not supported;"
                          f" supported: {sorted(_ROPE_KEYS)} (or None)")
      missing = [k for k in _ROPE_KEYS[kind] if k not in scaling]
      if missing:
        raise ConfigError(f"rope_scaling of type {kind!r} lacks {missing}")
      scaling.pop("type", None)
      scaling["rope_type"] = kind
      fix("rope_scaling", scaling)
    if self.attention_impl not in ATTENTION_IMPLS:
      raise ConfigError(f"attention_impl {self.attention_impl!r} is not one"
                        f" of {list(ATTENTION_IMPLS)}")
    if self.remat not in REMAT_POLICIES:
      raise ConfigError(f"remat {self.remat!r} is not one of"
                        f" {list(REMAT_POLICIES)}")
    for name in ("attention_dropout", "hidden_dropout"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got"
                          f" {getattr(self, name)}")

  # rope_scaling is a dict, so the generated hash would fail; nnx graphdefs
  # (and so jit caches) hash the Config.
  def __hash__(self):
    return hash(json.dumps(dataclasses.asdict(self), sort_keys=True,
                           default=str))

  @property
  def output_bias(self) -> bool:
    """Whether o_proj has a bias: Llama's attention_bias covers it, Qwen2's not."""
    return self.attention_bias and self.model_type == "llama"

  @classmethod
  def from_hf(cls, d: Mapping[str, Any], **runtime_options: Any) -> Config:
    """Builds a Config from the dict of an HF config.json (any version)."""
    model_type = d.get("model_type")
    if model_type not in _MODEL_TYPES:
      raise ConfigError(f"model_type {model_type!r} is not supported by"
                        f" fjft.models.llama; supported: {list(_MODEL_TYPES)}")
    missing = [hf for _, hf, default in _HF_FIELDS
               if default is _REQUIRED and hf not in d]
    if missing:
      raise ConfigError(f"HF config lacks required fields {missing}")
    kwargs = {f: d.get(hf, default) for f, hf, default in _HF_FIELDS}
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
    d = {hf: getattr(self, f) for f, hf, _ in _HF_FIELDS}
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


def rope_inv_freq(cfg: Config) -> np.ndarray:
  """Inverse RoPE frequencies [head_dim / 2], float32, as transformers.

  Same float32 operation order as transformers' rope init functions, so the
  angles agree to rounding.
  """
  dim = cfg.head_dim
  exponent = np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)
  inv_freq = (np.float32(1.0) /
              np.power(np.float32(cfg.rope_theta), exponent)).astype(np.float32)
  scaling = cfg.rope_scaling
  if scaling is None:
    return inv_freq
  factor = np.float32(scaling["factor"])
  if scaling["rope_type"] == "linear":
    return inv_freq / factor
  # llama3: long wavelengths slowed by `factor`, short ones kept, and a
  # smooth blend in between.
  low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
  old_len = scaling["original_max_position_embeddings"]
  low_wavelen, high_wavelen = old_len / low, old_len / high
  wavelen = np.float32(2 * math.pi) / inv_freq
  scaled = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
  smooth = ((np.float32(old_len) / wavelen - np.float32(low)) /
            np.float32(high - low))
  blended = (1 - smooth) * scaled / factor + smooth * scaled
  medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
  return np.where(medium, blended, scaled).astype(np.float32)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotates [B,T,N,D] by per-token angles; cos/sin [B,T,D]; HF half layout."""
  half = x.shape[-1] // 2
  xf = x.astype(jnp.float32)
  rotated = jnp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
  out = xf * cos[:, :, None] + rotated * sin[:, :, None]
  return out.astype(x.dtype)


# --------------------------------------------------------------- modules ----


class RMSNorm(nnx.Module):
  """x / rms(x) * scale, computed in float32."""

  def __init__(self, dim: int, eps: float, *, stack: int | None,
               rngs: nnx.Rngs):
    self.eps = eps
    self.scale = param(rngs, jax.nn.initializers.ones, (dim,), ("embed",),
                       stack)

  def __call__(self, x: jax.Array, dtype: jnp.dtype) -> jax.Array:
    x = x.astype(jnp.float32)
    y = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True)
                          + self.eps)
    return (y * self.scale[...]).astype(dtype)


class Attention(nnx.Module):
  """Grouped-query self-attention with RoPE and an optional KV cache."""

  def __init__(self, cfg: Config, *, stack: int | None, rngs: nnx.Rngs):
    h, std = cfg.hidden_size, cfg.initializer_range
    q_dim, kv_dim = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim

    def linear(n_in, n_out, axes, bias):
      return Linear(n_in, (n_out,), axes, axes[1:] if bias else None, std,
                    stack=stack, rngs=rngs)

    self.q_proj = linear(h, q_dim, ("embed", "heads"), cfg.attention_bias)
    self.k_proj = linear(h, kv_dim, ("embed", "kv_heads"), cfg.attention_bias)
    self.v_proj = linear(h, kv_dim, ("embed", "kv_heads"), cfg.attention_bias)
    self.o_proj = linear(q_dim, h, ("heads", "embed"), cfg.output_bias)

  def __call__(self, cfg: Config, x: jax.Array, rope: tuple[jax.Array, ...],
               mask: jax.Array, kv: tuple[jax.Array, jax.Array] | None,
               layer: jax.Array, cache_index: jax.Array, key: jax.Array | None,
               dtype: jnp.dtype):
    b, t, _ = x.shape
    d = cfg.head_dim
    q = apply_rope(self.q_proj(x, dtype).reshape(b, t, cfg.num_heads, d), *rope)
    k = apply_rope(self.k_proj(x, dtype).reshape(b, t, cfg.num_kv_heads, d),
                   *rope)
    v = self.v_proj(x, dtype).reshape(b, t, cfg.num_kv_heads, d)
    if kv is not None:
      k_all, k = update_cache_layer(kv[0], k, layer, cache_index)
      v_all, v = update_cache_layer(kv[1], v, layer, cache_index)
      kv = (k_all, v_all)
    ctx = attend(q, k, v, mask, impl=cfg.attention_impl,
                 dropout_rate=cfg.attention_dropout, key=key)
    return self.o_proj(ctx.reshape(b, t, -1), dtype), kv


class MLP(nnx.Module):
  """down(silu(gate(x)) * up(x))."""

  def __init__(self, cfg: Config, *, stack: int | None, rngs: nnx.Rngs):
    h, i, std = cfg.hidden_size, cfg.intermediate_size, cfg.initializer_range
    bias_in, bias_out = (("mlp",), ("embed",)) if cfg.mlp_bias else (None, None)
    self.gate_proj = Linear(h, (i,), ("embed", "mlp"), bias_in, std,
                            stack=stack, rngs=rngs)
    self.up_proj = Linear(h, (i,), ("embed", "mlp"), bias_in, std,
                          stack=stack, rngs=rngs)
    self.down_proj = Linear(i, (h,), ("mlp", "embed"), bias_out, std,
                            stack=stack, rngs=rngs)

  def __call__(self, x: jax.Array, dtype: jnp.dtype) -> jax.Array:
    gated = jax.nn.silu(self.gate_proj(x, dtype)) * self.up_proj(x, dtype)
    return self.down_proj(gated, dtype)


class Block(nnx.Module):
  """Pre-norm decoder layer: x + attn(norm(x)), then x + mlp(norm(x))."""

  def __init__(self, cfg: Config, *, stack: int | None = None,
               rngs: nnx.Rngs):
    h, eps = cfg.hidden_size, cfg.rms_norm_eps
    self.input_layernorm = RMSNorm(h, eps, stack=stack, rngs=rngs)
    self.self_attn = Attention(cfg, stack=stack, rngs=rngs)
    self.post_attention_layernorm = RMSNorm(h, eps, stack=stack, rngs=rngs)
    self.mlp = MLP(cfg, stack=stack, rngs=rngs)

  def __call__(self, cfg, x, rope, mask, kv, layer, cache_index, key, dtype):
    y, kv = self.self_attn(cfg, self.input_layernorm(x, dtype), rope, mask,
                           kv, layer, cache_index, fold(key, 0), dtype)
    x = x + dropout(y, cfg.hidden_dropout, fold(key, 1))
    y = self.mlp(self.post_attention_layernorm(x, dtype), dtype)
    return x + dropout(y, cfg.hidden_dropout, fold(key, 2)), kv


class Embed(nnx.Module):

  def __init__(self, num: int, dim: int, axes: Axes, init_std: float, *,
               rngs: nnx.Rngs):
    self.embedding = param(rngs, jax.nn.initializers.normal(init_std),
                           (num, dim), axes, None)


def make_layers(cfg, block_cls, rngs):
  """num_layers blocks: an nnx.List, or one stacked block for scan_layers."""
  if cfg.scan_layers:
    return block_cls(cfg, stack=cfg.num_layers, rngs=rngs)
  return nnx.List([block_cls(cfg, rngs=rngs) for _ in range(cfg.num_layers)])


def slots_and_cache(cfg_layers: int, t: int, cache: Cache | None,
                    cache_index: jax.Array | None, kv_mask: jax.Array | None,
                    sliding_window: int | None):
  """(mask [B|1,1,T,S], kv carry or None, cache_index) for one call."""
  if cache is None:
    if kv_mask is not None and kv_mask.shape[-1] != t:
      raise ValueError(f"kv_mask has {kv_mask.shape[-1]} slots; without a"
                       f" cache it must have T={t}")
    cache_index = jnp.zeros((), jnp.int32)
    kv, kv_len = None, t
  else:
    if cache.k.shape[0] != cfg_layers:
      raise ValueError(f"cache has {cache.k.shape[0]} layers, the model"
                       f" {cfg_layers}")
    cache_index = jnp.asarray(0 if cache_index is None else cache_index,
                              jnp.int32)
    kv, kv_len = (cache.k, cache.v), cache.k.shape[2]
    if kv_mask is not None and kv_mask.shape[-1] != kv_len:
      raise ValueError(f"kv_mask has {kv_mask.shape[-1]} slots; with a cache"
                       f" it must have max_len={kv_len}")
  q_slots = cache_index + jnp.arange(t, dtype=jnp.int32)
  return attention_mask(q_slots, kv_len, kv_mask, sliding_window), kv, \
      cache_index


class Model(nnx.Module):
  """Llama-family causal LM returning float32 logits (and the new cache)."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embed_tokens = Embed(cfg.vocab_size, cfg.hidden_size,
                              ("vocab", "embed"), cfg.initializer_range,
                              rngs=rngs)
    self.layers = make_layers(cfg, Block, rngs)
    self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, stack=None,
                        rngs=rngs)
    self.lm_head = None if cfg.tie_word_embeddings else Linear(
        cfg.hidden_size, (cfg.vocab_size,), ("embed", "vocab"), None,
        cfg.initializer_range, stack=None, rngs=rngs)

  def __call__(self, input_ids: jax.Array, positions: jax.Array, *,
               kv_mask: jax.Array | None = None, cache: Cache | None = None,
               cache_index: jax.Array | None = None,
               dropout_key: jax.Array | None = None,
               compute_dtype: jnp.dtype = jnp.float32,
               ) -> tuple[jax.Array, Cache | None]:
    """Runs the decoder on T new tokens.

    Args:
      input_ids: int32 [B, T].
      positions: int32 [B, T], RoPE positions (0 at a row's first real token,
        so left padding does not shift them).
      kv_mask: bool [B, S], False for padding keys; S == T without a cache,
        max_len with one. None: every key is real.
      cache: from init_cache; the new tokens' k/v are written at slots
        cache_index .. cache_index + T - 1.
      cache_index: int32 scalar, slot of input_ids[:, 0] (default 0).
      dropout_key: a PRNG key enables dropout; None disables it.
      compute_dtype: matmul/activation dtype; norms, RoPE and softmax stay
        float32, params are not cast.

    Returns:
      (logits float32 [B, T, vocab_size], the updated Cache or None). Query t
      attends to slots s <= cache_index + t (within sliding_window) whose
      kv_mask is True, and always to its own slot.
    """
    cfg = self.cfg
    t = input_ids.shape[1]
    mask, kv, cache_index = slots_and_cache(
        cfg.num_layers, t, cache, cache_index, kv_mask, cfg.sliding_window)
    angles = (positions.astype(jnp.float32)[..., None] *
              jnp.asarray(rope_inv_freq(cfg)))
    angles = jnp.concatenate([angles, angles], axis=-1)
    rope = (jnp.cos(angles), jnp.sin(angles))
    embed = self.embed_tokens.embedding[...]
    x = jnp.take(embed, input_ids, axis=0).astype(compute_dtype)

    def call(layer, x, kv, i):
      return layer(cfg, x, rope, mask, kv, i, cache_index,
                   fold(dropout_key, i), compute_dtype)

    x, kv = run_layers(self.layers, cfg.num_layers, cfg.scan_layers,
                       cfg.remat, x, kv, call)
    x = self.norm(x, compute_dtype)
    head = embed.T if self.lm_head is None else self.lm_head.kernel[...]
    logits = matmul(x, head, compute_dtype, out_dtype=jnp.float32)
    return logits.astype(jnp.float32), None if kv is None else Cache(*kv)


def init_cache(cfg: Config, batch: int, max_len: int,
               dtype: jnp.dtype = jnp.float32) -> Cache:
  """An empty cache, k and v [num_layers, batch, max_len, num_kv_heads, D]."""
  return new_cache(cfg.num_layers, batch, max_len, cfg.num_kv_heads,
                   cfg.head_dim, dtype)


# --------------------------------------------- shared: HF tensor mapping ----


@dataclasses.dataclass(frozen=True)
class HFTensor:
  """One param <-> one HF tensor. Per-layer entries have "{i}" in hf_key.

  path: our param path (per-layer: inside the layer).
  hf_shape: the HF tensor's shape.
  to_ours / to_hf: layout conversions (numpy).
  """

  path: tuple[str, ...]
  hf_key: str
  hf_shape: tuple[int, ...]
  to_ours: Callable[[np.ndarray], np.ndarray]
  to_hf: Callable[[np.ndarray], np.ndarray]

  @property
  def per_layer(self) -> bool:
    return "{i}" in self.hf_key


def same(a: np.ndarray) -> np.ndarray:
  return a


def transpose(a: np.ndarray) -> np.ndarray:
  return a.T


def _layer_path(t: HFTensor, i: int, scan: bool) -> tuple[str, ...]:
  return ("layers", *t.path) if scan else ("layers", str(i), *t.path)


def load_values(table: Sequence[HFTensor], num_layers: int, scan: bool,
                tensors: Mapping[str, np.ndarray], source: Mapping[str, str],
                where: str, ignorable: Callable[[str], bool],
                ) -> dict[tuple[str, ...], np.ndarray]:
  """Our param path -> float32 value, from HF tensors keyed by HF name.

  Raises:
    CheckpointError: a tensor is missing, mis-shaped, or not part of the
      model (names the file holding it, or `where`, and the tensor).
  """
  used: set[str] = set()

  def get(key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in tensors:
      raise CheckpointError(f"{where}: missing tensor {key!r} (expected shape"
                            f" {shape})")
    arr = tensors[key]
    if tuple(arr.shape) != tuple(shape):
      raise CheckpointError(f"{source.get(key, where)}: tensor {key!r} has"
                            f" shape {tuple(arr.shape)}, expected {shape}")
    used.add(key)
    return np.asarray(arr, np.float32)

  values: dict[tuple[str, ...], np.ndarray] = {}
  for t in table:
    if not t.per_layer:
      values[t.path] = t.to_ours(get(t.hf_key, t.hf_shape))
      continue
    per_layer = [t.to_ours(get(t.hf_key.format(i=i), t.hf_shape))
                 for i in range(num_layers)]
    if scan:
      values[_layer_path(t, 0, True)] = np.stack(per_layer)
    else:
      for i, v in enumerate(per_layer):
        values[_layer_path(t, i, False)] = v
  unexpected = sorted(k for k in set(tensors) - used if not ignorable(k))
  if unexpected:
    k = unexpected[0]
    raise CheckpointError(
        f"{source.get(k, where)}: unexpected tensor {k!r} (shape"
        f" {tuple(tensors[k].shape)}), not part of this model as its config"
        f" describes it ({len(unexpected)} unexpected in all:"
        f" {unexpected[:5]})")
  return values


def _path_part(key: Any) -> str:
  # jax path entries: DictKey(.key), SequenceKey(.idx), GetAttrKey(.name).
  for attr in ("key", "idx", "name"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def flat_params(tree: Any) -> dict[tuple[str, ...], np.ndarray]:
  """Path -> float32 numpy copy, for a Model, an nnx.State or a pure dict."""
  if isinstance(tree, nnx.Module):
    tree = nnx.state(tree, nnx.Param)
  leaves, _ = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: isinstance(x, nnx.Variable))
  flat = {}
  for path, leaf in leaves:
    value = leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
    flat[tuple(_path_part(k) for k in path)] = np.array(
        jax.device_get(value), np.float32)
  return flat


def export_values(table: Sequence[HFTensor], num_layers: int, scan: bool,
                  model_state: Any) -> dict[str, np.ndarray]:
  """HF name -> float32 array in HF layout, the inverse of load_values."""
  flat = flat_params(model_state)
  out = {}
  for t in table:
    if not t.per_layer:
      out[t.hf_key] = t.to_hf(flat[t.path])
      continue
    for i in range(num_layers):
      value = flat[_layer_path(t, i, scan)]
      out[t.hf_key.format(i=i)] = t.to_hf(value[i] if scan else value)
  return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}


def build(model_cls, cfg, values: Mapping[tuple[str, ...], np.ndarray],
          random_value: Callable[[tuple[str, ...], tuple[int, ...],
                                  np.random.Generator], np.ndarray],
          seed: int):
  """A model holding `values`; params absent from it are drawn at random.

  Builds abstractly and fills in numpy arrays: no initialiser runs, so no
  per-shape XLA compiles.
  """
  abstract = nnx.eval_shape(lambda: model_cls(cfg, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  rng = np.random.default_rng(seed)
  for p, var in nnx.to_flat_state(state):
    path = tuple(str(x) for x in p)
    value = values.get(path)
    if value is None:
      value = random_value(path, var.get_value().shape, rng)
    var.set_value(jnp.asarray(value))
  return nnx.merge(graphdef, state)


def read_hf_config(path: str | Path) -> dict[str, Any]:
  """The dict of an HF folder's config.json."""
  folder = Path(path)
  cfg_path = folder / "config.json"
  if not cfg_path.is_file():
    raise CheckpointError(f"{folder}: no config.json (is this a Hugging Face"
                          " model folder?)")
  try:
    hf_config = json.loads(cfg_path.read_text())
  except ValueError as e:
    raise CheckpointError(f"{cfg_path}: not valid JSON: {e}") from e
  if not isinstance(hf_config, dict):
    raise CheckpointError(f"{cfg_path}: expected a JSON object")
  return hf_config


def read_hf_tensors(path: str | Path
                    ) -> tuple[dict[str, np.ndarray], dict[str, str], str]:
  """(tensors, tensor -> its file, the files in words) of an HF folder."""
  folder = Path(path)
  files = safetensors_io.safetensors_files(folder)
  tensors: dict[str, np.ndarray] = {}
  source: dict[str, str] = {}
  for f in files:
    for k, v in safetensors_io.read_safetensors_file(f).items():
      if k in tensors:
        raise CheckpointError(f"{f}: tensor {k!r} also appears in"
                              f" {source[k]}")
      tensors[k], source[k] = v, str(f)
  where = str(files[0]) if len(files) == 1 else f"{folder} (sharded)"
  return tensors, source, where


def config_error_in(cfg_source: str, make: Callable[[], Any]) -> Any:
  """Calls make(); a ConfigError gets the config's source prefixed."""
  try:
    return make()
  except ConfigError as e:
    raise ConfigError(f"{cfg_source}: {e}") from e


# ------------------------------------------------------ HF weight mapping ----


def _hf_table(cfg: Config) -> list[HFTensor]:
  """The one table mapping every param to its HF tensor."""
  h, inter = cfg.hidden_size, cfg.intermediate_size
  q_dim, kv_dim = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
  pre = "model.layers.{i}"

  def linear(path, hf, n_in, n_out, bias):
    out = [HFTensor((*path, "kernel"), f"{hf}.weight", (n_out, n_in),
                    transpose, transpose)]
    if bias:
      out.append(HFTensor((*path, "bias"), f"{hf}.bias", (n_out,), same, same))
    return out

  def norm(path, hf):
    return HFTensor((*path, "scale"), f"{hf}.weight", (h,), same, same)

  table = [HFTensor(("embed_tokens", "embedding"), "model.embed_tokens.weight",
                    (cfg.vocab_size, h), same, same),
           norm(("norm",), "model.norm"),
           norm(("input_layernorm",), f"{pre}.input_layernorm"),
           norm(("post_attention_layernorm",),
                f"{pre}.post_attention_layernorm")]
  attn = f"{pre}.self_attn"
  table += linear(("self_attn", "q_proj"), f"{attn}.q_proj", h, q_dim,
                  cfg.attention_bias)
  table += linear(("self_attn", "k_proj"), f"{attn}.k_proj", h, kv_dim,
                  cfg.attention_bias)
  table += linear(("self_attn", "v_proj"), f"{attn}.v_proj", h, kv_dim,
                  cfg.attention_bias)
  table += linear(("self_attn", "o_proj"), f"{attn}.o_proj", q_dim, h,
                  cfg.output_bias)
  for name, n_in, n_out in (("gate_proj", h, inter), ("up_proj", h, inter),
                            ("down_proj", inter, h)):
    table += linear(("mlp", name), f"{pre}.mlp.{name}", n_in, n_out,
                    cfg.mlp_bias)
  if not cfg.tie_word_embeddings:
    table += linear(("lm_head",), "lm_head", h, cfg.vocab_size, False)
  return table


def _canonical_key(key: str) -> str:
  # LlamaModel (no LM head) checkpoints lack ForCausalLM's "model." prefix.
  if key.startswith("model.") or key == "lm_head.weight":
    return key
  return "model." + key


def _ignorable(cfg: Config) -> Callable[[str], bool]:
  def ignorable(key: str) -> bool:
    # Old checkpoints saved the (recomputed) RoPE buffer; tied checkpoints
    # sometimes save the head, which is the embedding anyway.
    return (key.endswith("rotary_emb.inv_freq") or
            (cfg.tie_word_embeddings and key == "lm_head.weight"))
  return ignorable


def _random_value(cfg: Config):
  def draw(path, shape, rng):
    # HF LlamaPreTrainedModel init: weights ~ N(0, initializer_range),
    # biases 0, norm scales 1.
    if path[-1] in ("kernel", "embedding"):
      return rng.normal(0.0, cfg.initializer_range, shape).astype(np.float32)
    return np.full(shape, 1.0 if path[-1] == "scale" else 0.0, np.float32)
  return draw


def init_random(cfg: Config, seed: int = 0) -> Model:
  """A randomly initialised model, HF-style, fast to build (numpy RNG)."""
  return build(Model, cfg, {}, _random_value(cfg), seed)


def _from_tensors(cfg: Config, tensors: Mapping[str, np.ndarray],
                  source: Mapping[str, str], where: str) -> Model:
  canonical = {}
  canonical_source = {}
  for k, v in tensors.items():
    c = _canonical_key(k)
    if c in canonical:
      raise CheckpointError(f"{source.get(k, where)}: tensor {k!r} appears"
                            " both with and without the 'model.' prefix")
    canonical[c], canonical_source[c] = v, source.get(k, where)
  values = load_values(_hf_table(cfg), cfg.num_layers, cfg.scan_layers,
                       canonical, canonical_source, where, _ignorable(cfg))
  return build(Model, cfg, values, _random_value(cfg), seed=0)


def from_state_dict(hf_config: Mapping[str, Any],
                    tensors: Mapping[str, np.ndarray], *,
                    source: str = "state dict", **runtime_options: Any
                    ) -> tuple[Config, Model]:
  """Builds (cfg, model) from an HF config dict and HF-named tensors.

  Args:
    hf_config: the dict of an HF config.json.
    tensors: HF name -> array in torch layout (any float dtype; stored as
      float32). Names may lack the "model." prefix.
    source: what to call the tensors' origin in error messages (a path).
    **runtime_options: Config runtime fields (attention_impl, scan_layers,
      remat, attention_dropout, hidden_dropout).

  Raises:
    ConfigError: unsupported config. CheckpointError: a missing,
      unexpected or mis-shaped tensor, named.
  """
  cfg = config_error_in(source, lambda: Config.from_hf(hf_config,
                                                       **runtime_options))
  return cfg, _from_tensors(cfg, tensors, {}, source)


def from_hf(path: str | Path, **runtime_options: Any) -> tuple[Config, Model]:
  """Loads an HF folder: config.json + model.safetensors (or index + shards).

  Runtime options as in from_state_dict. Raises CheckpointError naming the
  file and tensor for a missing, unexpected or mis-shaped tensor.
  """
  # The config first: an unsupported model fails before any tensor is read.
  hf_config = read_hf_config(path)
  cfg = config_error_in(str(Path(path) / "config.json"),
                        lambda: Config.from_hf(hf_config, **runtime_options))
  return cfg, _from_tensors(cfg, *read_hf_tensors(path))


def to_hf_state_dict(cfg: Config, model_state: Model | nnx.State | Mapping
                     ) -> dict[str, np.ndarray]:
  """Params as an HF LlamaForCausalLM/MistralForCausalLM/Qwen2ForCausalLM
  state dict (float32, [out, in] Linear weights; no lm_head when tied).

  model_state: the Model, its nnx.State, or nnx.to_pure_dict(state).
  """
  return export_values(_hf_table(cfg), cfg.num_layers, cfg.scan_layers,
                       model_state)
