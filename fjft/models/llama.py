"""Llama-family decoder LMs (Llama 2/3, SmolLM2, Mistral, Qwen2) in Flax NNX.

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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.errors import ConfigError
from fjft.models import decoder
from fjft.models.decoder import (REQUIRED, Cache, HFTensor, fold, same,
                                 transpose)
from fjft.models.layers.linear import Linear, param
from fjft.models.layers.dropout import dropout

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- config ----

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
    decoder.check_positive_ints(
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
    decoder.check_runtime_options(self, ("attention_dropout", "hidden_dropout"))

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
    kwargs = decoder.hf_kwargs(d, _HF_FIELDS)
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
    # adapters' dropout keys: folded from the attention key at indices its own use avoids
    q = self.q_proj(x, dtype, fold(key, 10)).reshape(b, t, cfg.num_heads, d)
    q = apply_rope(q, *rope)
    k = self.k_proj(x, dtype, fold(key, 11)).reshape(b, t, cfg.num_kv_heads, d)
    k = apply_rope(k, *rope)
    v = self.v_proj(x, dtype, fold(key, 12)).reshape(b, t, cfg.num_kv_heads, d)
    k, v, kv = decoder.write_cache(kv, k, v, layer, cache_index)
    ctx = decoder.attend(q, k, v, mask, impl=cfg.attention_impl,
                         dropout_rate=cfg.attention_dropout, key=key)
    return self.o_proj(ctx.reshape(b, t, -1), dtype, fold(key, 13)), kv


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

  def __call__(self, x: jax.Array, dtype: jnp.dtype,
               key: jax.Array | None = None) -> jax.Array:
    """`key` draws the dropout of adapters on the projections, if any."""
    gated = (jax.nn.silu(self.gate_proj(x, dtype, fold(key, 0)))
             * self.up_proj(x, dtype, fold(key, 1)))
    return self.down_proj(gated, dtype, fold(key, 2))


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
    y = self.mlp(self.post_attention_layernorm(x, dtype), dtype, fold(key, 3))
    return x + dropout(y, cfg.hidden_dropout, fold(key, 2)), kv


class Model(nnx.Module):
  """Llama-family causal LM returning float32 logits (and the new cache)."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embed_tokens = decoder.Embed(cfg.vocab_size, cfg.hidden_size,
                                      ("vocab", "embed"),
                                      cfg.initializer_range, rngs=rngs)
    self.layers = decoder.make_layers(cfg, Block, rngs)
    self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, stack=None,
                        rngs=rngs)
    self.lm_head = None if cfg.tie_word_embeddings else Linear(
        cfg.hidden_size, (cfg.vocab_size,), ("embed", "vocab"), None,
        cfg.initializer_range, stack=None, rngs=rngs)

  def __call__(self, input_ids: jax.Array, positions: jax.Array, **kwargs
               ) -> tuple[jax.Array, Cache | None]:
    """(float32 logits [B, T, vocab], the new Cache or None); the arguments
    are those of `features`."""
    f = self.features(input_ids, positions, **kwargs)
    return f.logits(), f.cache

  def features(self, input_ids: jax.Array, positions: jax.Array, *,
               kv_mask: jax.Array | None = None, cache: Cache | None = None,
               cache_index: jax.Array | None = None,
               dropout_key: jax.Array | None = None,
               compute_dtype: jnp.dtype = jnp.float32,
               segment_ids: jax.Array | None = None,
               ) -> decoder.Features:
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
      segment_ids: int32 [B, T] for packed rows (no cache): a token attends
        only to tokens of its own segment; pass positions restarting at 0 per
        segment.

    Returns:
      decoder.Features (final hidden states, vocabulary head, updated Cache or
      None). Query t attends to slots s <= cache_index + t (within
      sliding_window) whose kv_mask is True, and always to its own slot.
    """
    cfg = self.cfg
    t = input_ids.shape[1]
    mask, kv, cache_index = decoder.slots_and_cache(
        cfg.num_layers, t, cache, cache_index, kv_mask, cfg.sliding_window,
        segment_ids)
    angles = (positions.astype(jnp.float32)[..., None] *
              jnp.asarray(rope_inv_freq(cfg)))
    angles = jnp.concatenate([angles, angles], axis=-1)
    rope = (jnp.cos(angles), jnp.sin(angles))
    embed = self.embed_tokens.embedding[...]
    x = jnp.take(embed, input_ids, axis=0).astype(compute_dtype)

    def call(layer, x, kv, i):
      return layer(cfg, x, rope, mask, kv, i, cache_index,
                   fold(dropout_key, i), compute_dtype)

    x, kv = decoder.run_layers(self.layers, cfg.num_layers, cfg.scan_layers,
                               cfg.remat, x, kv, call)
    x = self.norm(x, compute_dtype)
    head = embed.T if self.lm_head is None else self.lm_head.kernel[...]
    return decoder.features(x, head, compute_dtype, kv)


def init_cache(cfg: Config, batch: int, max_len: int,
               dtype: jnp.dtype = jnp.float32) -> Cache:
  """An empty cache, k and v [num_layers, batch, max_len, num_kv_heads, D]."""
  return decoder.new_cache(cfg.num_layers, batch, max_len, cfg.num_kv_heads,
                           cfg.head_dim, dtype)


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


def _ignorable(cfg: Config) -> Callable[[str], bool]:
  def ignorable(key: str) -> bool:
    # Old checkpoints saved the (recomputed) RoPE buffer; tied checkpoints
    # sometimes save the head, which is the embedding anyway.
    return (key.endswith("rotary_emb.inv_freq") or
            (cfg.tie_word_embeddings and key == "lm_head.weight"))
  return ignorable


def _random_value(cfg: Config):
  # HF LlamaPreTrainedModel init: every weight ~ N(0, initializer_range).
  return decoder.hf_init(lambda path: cfg.initializer_range)


def init_random(cfg: Config, seed: int = 0) -> Model:
  """A randomly initialised model, HF-style, fast to build (numpy RNG)."""
  return decoder.build(Model, cfg, {}, _random_value(cfg), seed)


def _from_tensors(cfg: Config, tensors: Mapping[str, np.ndarray],
                  source: Mapping[str, str], where: str) -> Model:
  # LlamaModel (no LM head) checkpoints lack ForCausalLM's "model." prefix.
  canonical, canonical_source = decoder.with_prefix(tensors, source, where,
                                                    "model.")
  values = decoder.load_values(_hf_table(cfg), cfg.num_layers,
                               cfg.scan_layers, canonical, canonical_source,
                               where, _ignorable(cfg))
  return decoder.build(Model, cfg, values, _random_value(cfg), seed=0)


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
  cfg = decoder.make_config(Config, hf_config, source, runtime_options)
  return cfg, _from_tensors(cfg, tensors, {}, source)


def from_hf(path: str | Path, **runtime_options: Any) -> tuple[Config, Model]:
  """Loads an HF folder: config.json + model.safetensors (or index + shards).

  Runtime options as in from_state_dict. Raises CheckpointError naming the
  file and tensor for a missing, unexpected or mis-shaped tensor.
  """
  cfg = decoder.config_of_folder(Config, path, runtime_options)
  return cfg, _from_tensors(cfg, *decoder.read_hf_tensors(path))


# HF stores Linear weights [out, in] (PEFT's fan_in_fan_out=False).
HF_WEIGHT_IN_FIRST = False


def hf_linear_names(cfg: Config) -> dict[str, tuple[str, ...]]:
  """Each Linear's HF module name (decoder.linear_names)."""
  return decoder.linear_names(_hf_table(cfg), cfg.num_layers)


def to_hf_state_dict(cfg: Config, model_state: Model | nnx.State | Mapping
                     ) -> dict[str, np.ndarray]:
  """Params as an HF LlamaForCausalLM/MistralForCausalLM/Qwen2ForCausalLM
  state dict (float32, [out, in] Linear weights; no lm_head when tied).

  model_state: the Model, its nnx.State, or nnx.to_pure_dict(state).
  """
  return decoder.export_values(_hf_table(cfg), cfg.num_layers,
                               cfg.scan_layers, model_state)
