"""GPT-2 causal LM in Flax NNX, with HF weights I/O.

Same call signature, Cache and init_cache contract as fjft.models.llama; the
pieces both share (Cache, masks, layer driver, tensor tables) are in
fjft.models.decoder.

Logical axis names: "vocab", "embed", "heads" (the fused num_heads * head_dim
dimension), "mlp", "position" (rows of the position table), "layers" (the
stacked-layer axis under scan_layers), None (the q/k/v selector).

Parameter tree (HF GPT2LMHeadModel names in brackets; HF's Conv1D weights are
already [in, out], so only c_attn is reshaped):

  wte.embedding                      [V, H]     (transformer.wte.weight)
  wpe.embedding                      [P, H]     (transformer.wpe.weight)
  layers.{i}.ln_1.{scale,bias}       [H]        (transformer.h.{i}.ln_1.{weight,bias})
  layers.{i}.attn.c_attn.kernel      [H, 3, H]  (…attn.c_attn.weight [H, 3H])
  layers.{i}.attn.c_attn.bias        [3, H]     (…attn.c_attn.bias [3H])
  layers.{i}.attn.c_proj.{kernel,bias}  [H, H]
  layers.{i}.ln_2.{scale,bias}       [H]
  layers.{i}.mlp.c_fc.{kernel,bias}  [H, I]
  layers.{i}.mlp.c_proj.{kernel,bias}   [I, H]
  ln_f.{scale,bias}                  [H]        (transformer.ln_f.*)

The LM head is always the token embedding (tied), as in every GPT-2
checkpoint. The fused q/k/v kernel keeps q/k/v on their own axis so "heads"
can be sharded without splitting across q, k and v (as bert.py does).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.errors import ConfigError
from fjft.models import decoder
from fjft.models.decoder import REQUIRED, Cache, HFTensor, fold, same
from fjft.models.layers.linear import Linear, param
from fjft.models.layers.dropout import dropout

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

# HF names of the tanh-approximated GELU that GPT-2 uses, plus exact GELU.
_ACTIVATIONS = {
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
}

# HF options that change the math in ways this module does not implement:
# key -> the only value accepted.
_FIXED_HF_OPTIONS = {"scale_attn_weights": True,
                     "scale_attn_by_inverse_layer_idx": False,
                     "add_cross_attention": False,
                     "tie_word_embeddings": True}


@dataclasses.dataclass(frozen=True)
class Config:
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
  # Runtime options.
  attention_impl: str | None = None
  scan_layers: bool = False
  remat: str = "none"
  embedding_dropout: float = 0.0
  attention_dropout: float = 0.0
  hidden_dropout: float = 0.0

  def __post_init__(self):
    if self.model_type != "gpt2":
      raise ConfigError(f"model_type {self.model_type!r} is not 'gpt2'")
    decoder.check_positive_ints(
        self, ("vocab_size", "hidden_size", "num_layers", "num_heads",
               "max_position_embeddings"))
    if self.intermediate_size is None:
      object.__setattr__(self, "intermediate_size", 4 * self.hidden_size)
    if self.hidden_size % self.num_heads:
      raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by"
                        f" num_heads {self.num_heads}")
    if self.activation_function not in _ACTIVATIONS:
      raise ConfigError(f"activation_function {self.activation_function!r}"
                        f" is not supported; supported: {sorted(_ACTIVATIONS)}")
    decoder.check_runtime_options(
        self, ("embedding_dropout", "attention_dropout", "hidden_dropout"))

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @classmethod
  def from_hf(cls, d: Mapping[str, Any], **runtime_options: Any) -> Config:
    """Builds a Config from the dict of an HF GPT-2 config.json."""
    if d.get("model_type") != "gpt2":
      raise ConfigError(f"model_type {d.get('model_type')!r} is not 'gpt2'")
    kwargs = decoder.hf_kwargs(d, _HF_FIELDS)
    for key, wanted in _FIXED_HF_OPTIONS.items():
      if d.get(key, wanted) != wanted:
        raise ConfigError(f"{key}={d[key]!r} is not supported (only"
                          f" {wanted!r})")
    return cls(**kwargs, **runtime_options)

  def to_hf(self) -> dict[str, Any]:
    """The HF config.json fields (dropout rates are the runtime ones)."""
    d = {hf: getattr(self, f) for f, hf, _ in _HF_FIELDS}
    d.update(model_type="gpt2", architectures=["GPT2LMHeadModel"],
             embd_pdrop=self.embedding_dropout,
             attn_pdrop=self.attention_dropout,
             resid_pdrop=self.hidden_dropout, **_FIXED_HF_OPTIONS)
    return d


# --------------------------------------------------------------- modules ----


class LayerNorm(nnx.Module):
  """LayerNorm whose statistics are always computed in float32."""

  def __init__(self, dim: int, eps: float, *, stack: int | None,
               rngs: nnx.Rngs):
    self.eps = eps
    self.scale = param(rngs, jax.nn.initializers.ones, (dim,), ("embed",),
                       stack)
    self.bias = param(rngs, jax.nn.initializers.zeros, (dim,), ("embed",),
                      stack)

  def __call__(self, x: jax.Array, dtype: jnp.dtype) -> jax.Array:
    x = x.astype(jnp.float32)
    centered = x - jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(centered), axis=-1, keepdims=True)
    y = centered * jax.lax.rsqrt(var + self.eps)
    return (y * self.scale[...] + self.bias[...]).astype(dtype)


class Attention(nnx.Module):
  """Fused-QKV causal self-attention with an optional KV cache."""

  def __init__(self, cfg: Config, *, stack: int | None, rngs: nnx.Rngs):
    h, std = cfg.hidden_size, cfg.initializer_range
    # HF scales residual projections by 1/sqrt(2 * n_layer) at init.
    proj_std = std / math.sqrt(2 * cfg.num_layers)
    self.c_attn = Linear(h, (3, h), ("embed", None, "heads"), (None, "heads"),
                         std, stack=stack, rngs=rngs)
    self.c_proj = Linear(h, (h,), ("heads", "embed"), ("embed",), proj_std,
                         stack=stack, rngs=rngs)

  def __call__(self, cfg, x, mask, kv, layer, cache_index, key, dtype):
    b, t, _ = x.shape
    # adapters' dropout keys: folded from the attention key at indices its own use avoids
    qkv = self.c_attn(x, dtype, fold(key, 10)).reshape(b, t, 3, cfg.num_heads, cfg.head_dim)
    q, k, v = (y.squeeze(2) for y in jnp.split(qkv, 3, axis=2))
    k, v, kv = decoder.write_cache(kv, k, v, layer, cache_index)
    ctx = decoder.attend(q, k, v, mask, impl=cfg.attention_impl,
                         dropout_rate=cfg.attention_dropout, key=key)
    return self.c_proj(ctx.reshape(b, t, cfg.hidden_size), dtype, fold(key, 11)), kv


class MLP(nnx.Module):

  def __init__(self, cfg: Config, *, stack: int | None, rngs: nnx.Rngs):
    h, i, std = cfg.hidden_size, cfg.intermediate_size, cfg.initializer_range
    self.c_fc = Linear(h, (i,), ("embed", "mlp"), ("mlp",), std, stack=stack,
                       rngs=rngs)
    self.c_proj = Linear(i, (h,), ("mlp", "embed"), ("embed",),
                         std / math.sqrt(2 * cfg.num_layers), stack=stack,
                         rngs=rngs)

  def __call__(self, cfg: Config, x: jax.Array, dtype: jnp.dtype,
               key: jax.Array | None = None) -> jax.Array:
    """`key` draws the dropout of adapters on the projections, if any."""
    act = _ACTIVATIONS[cfg.activation_function]
    return self.c_proj(act(self.c_fc(x, dtype, fold(key, 0))), dtype, fold(key, 1))


class Block(nnx.Module):
  """Pre-norm GPT-2 layer: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

  def __init__(self, cfg: Config, *, stack: int | None = None,
               rngs: nnx.Rngs):
    h, eps = cfg.hidden_size, cfg.layer_norm_eps
    self.ln_1 = LayerNorm(h, eps, stack=stack, rngs=rngs)
    self.attn = Attention(cfg, stack=stack, rngs=rngs)
    self.ln_2 = LayerNorm(h, eps, stack=stack, rngs=rngs)
    self.mlp = MLP(cfg, stack=stack, rngs=rngs)

  def __call__(self, cfg, x, mask, kv, layer, cache_index, key, dtype):
    y, kv = self.attn(cfg, self.ln_1(x, dtype), mask, kv, layer, cache_index,
                      fold(key, 0), dtype)
    x = x + dropout(y, cfg.hidden_dropout, fold(key, 1))
    y = self.mlp(cfg, self.ln_2(x, dtype), dtype, fold(key, 3))
    return x + dropout(y, cfg.hidden_dropout, fold(key, 2)), kv


class Model(nnx.Module):
  """GPT-2 causal LM returning float32 logits (and the new cache)."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.cfg = cfg
    std = cfg.initializer_range
    self.wte = decoder.Embed(cfg.vocab_size, cfg.hidden_size,
                             ("vocab", "embed"), std, rngs=rngs)
    self.wpe = decoder.Embed(cfg.max_position_embeddings, cfg.hidden_size,
                             ("position", "embed"), std, rngs=rngs)
    self.layers = decoder.make_layers(cfg, Block, rngs)
    self.ln_f = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, stack=None,
                          rngs=rngs)

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
    """As fjft.models.llama.Model.features; `positions` index wpe.

    Positions must be < max_position_embeddings: out-of-range indices are
    clamped by jnp.take rather than reported (they are traced values).
    """
    cfg = self.cfg
    mask, kv, cache_index = decoder.slots_and_cache(
        cfg.num_layers, input_ids.shape[1], cache, cache_index, kv_mask, None,
        segment_ids)
    wte = self.wte.embedding[...]
    x = (jnp.take(wte, input_ids, axis=0) +
         jnp.take(self.wpe.embedding[...], positions, axis=0))
    # Layers fold their index 0..L-1 into the key; L is the embeddings'.
    x = dropout(x.astype(compute_dtype), cfg.embedding_dropout,
                fold(dropout_key, cfg.num_layers))

    def call(layer, x, kv, i):
      return layer(cfg, x, mask, kv, i, cache_index, fold(dropout_key, i),
                   compute_dtype)

    x, kv = decoder.run_layers(self.layers, cfg.num_layers, cfg.scan_layers,
                               cfg.remat, x, kv, call)
    x = self.ln_f(x, compute_dtype)
    return decoder.features(x, wte.T, compute_dtype, kv)


def init_cache(cfg: Config, batch: int, max_len: int,
               dtype: jnp.dtype = jnp.float32) -> Cache:
  """An empty cache, k and v [num_layers, batch, max_len, num_heads, D]."""
  return decoder.new_cache(cfg.num_layers, batch, max_len, cfg.num_heads,
                           cfg.head_dim, dtype)


# ------------------------------------------------------ HF weight mapping ----


def _hf_table(cfg: Config) -> list[HFTensor]:
  h, inter = cfg.hidden_size, cfg.intermediate_size
  pre = "transformer.h.{i}"

  def conv1d(path, hf, n_in, n_out):
    return [HFTensor((*path, "kernel"), f"{hf}.weight", (n_in, n_out), same,
                     same),
            HFTensor((*path, "bias"), f"{hf}.bias", (n_out,), same, same)]

  def norm(path, hf):
    return [HFTensor((*path, "scale"), f"{hf}.weight", (h,), same, same),
            HFTensor((*path, "bias"), f"{hf}.bias", (h,), same, same)]

  return [
      HFTensor(("wte", "embedding"), "transformer.wte.weight",
               (cfg.vocab_size, h), same, same),
      HFTensor(("wpe", "embedding"), "transformer.wpe.weight",
               (cfg.max_position_embeddings, h), same, same),
      *norm(("ln_f",), "transformer.ln_f"),
      *norm(("ln_1",), f"{pre}.ln_1"),
      HFTensor(("attn", "c_attn", "kernel"), f"{pre}.attn.c_attn.weight",
               (h, 3 * h), lambda a: a.reshape(h, 3, h),
               lambda a: a.reshape(h, 3 * h)),
      HFTensor(("attn", "c_attn", "bias"), f"{pre}.attn.c_attn.bias",
               (3 * h,), lambda a: a.reshape(3, h), lambda a: a.reshape(-1)),
      *conv1d(("attn", "c_proj"), f"{pre}.attn.c_proj", h, h),
      *norm(("ln_2",), f"{pre}.ln_2"),
      *conv1d(("mlp", "c_fc"), f"{pre}.mlp.c_fc", h, inter),
      *conv1d(("mlp", "c_proj"), f"{pre}.mlp.c_proj", inter, h),
  ]


def _ignorable(key: str) -> bool:
  # Causal-mask buffers of older checkpoints, and the tied head.
  return key.endswith((".attn.bias", ".attn.masked_bias")) or \
      key == "lm_head.weight"


def _random_value(cfg: Config):
  # HF GPT2PreTrainedModel init: N(0, initializer_range), residual
  # projections (c_proj) scaled down by sqrt(2 * n_layer).
  proj_std = cfg.initializer_range / math.sqrt(2 * cfg.num_layers)
  return decoder.hf_init(
      lambda path: proj_std if "c_proj" in path else cfg.initializer_range)


def init_random(cfg: Config, seed: int = 0) -> Model:
  """A randomly initialised model, HF-style, fast to build (numpy RNG)."""
  return decoder.build(Model, cfg, {}, _random_value(cfg), seed)


def _from_tensors(cfg: Config, tensors: Mapping[str, np.ndarray],
                  source: Mapping[str, str], where: str) -> Model:
  # The original OpenAI checkpoints (GPT2Model) have no "transformer." prefix.
  canonical, canonical_source = decoder.with_prefix(tensors, source, where,
                                                    "transformer.")
  values = decoder.load_values(_hf_table(cfg), cfg.num_layers,
                               cfg.scan_layers, canonical, canonical_source,
                               where, _ignorable)
  return decoder.build(Model, cfg, values, _random_value(cfg), seed=0)


def from_state_dict(hf_config: Mapping[str, Any],
                    tensors: Mapping[str, np.ndarray], *,
                    source: str = "state dict", **runtime_options: Any
                    ) -> tuple[Config, Model]:
  """As fjft.models.llama.from_state_dict, for GPT-2 (HF Conv1D layout)."""
  cfg = decoder.make_config(Config, hf_config, source, runtime_options)
  return cfg, _from_tensors(cfg, tensors, {}, source)


def from_hf(path: str | Path, **runtime_options: Any) -> tuple[Config, Model]:
  """Loads an HF GPT-2 folder (config.json + safetensors, single or sharded).

  Raises CheckpointError naming the file and tensor for a missing,
  unexpected or mis-shaped tensor.
  """
  cfg = decoder.config_of_folder(Config, path, runtime_options)
  return cfg, _from_tensors(cfg, *decoder.read_hf_tensors(path))


# HF's Conv1D stores weights [in, out] (PEFT's fan_in_fan_out=True).
HF_WEIGHT_IN_FIRST = True


def hf_linear_names(cfg: Config) -> dict[str, tuple[str, ...]]:
  """Each Linear's HF module name (decoder.linear_names)."""
  return decoder.linear_names(_hf_table(cfg), cfg.num_layers)


def to_hf_state_dict(cfg: Config, model_state: Model | nnx.State | Mapping
                     ) -> dict[str, np.ndarray]:
  """Params as an HF GPT2LMHeadModel state dict (float32, no lm_head: tied).

  model_state: the Model, its nnx.State, or nnx.to_pure_dict(state).
  """
  return decoder.export_values(_hf_table(cfg), cfg.num_layers,
                               cfg.scan_layers, model_state)
