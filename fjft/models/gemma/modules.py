"""The modules of a Gemma-family decoder: (1 + w) RMSNorms, GeGLU MLP, attention with
a configurable scale, logit soft-capping, q/k norms and per-layer sliding windows and
RoPE bases, Gemma's pre-norm and Gemma 2/3's sandwich-norm blocks, and the model.

Layers differ only in data, never in structure (scan_layers stacks them): whether a
layer slides, and so its RoPE base in Gemma 3, is a per-layer table indexed by the
traced layer index.
"""

from __future__ import annotations

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.models import decoder
from fjft.models.gemma.config import Config
from fjft.models.layers import kv_cache, lora
from fjft.models.layers.activations import ACTIVATIONS
from fjft.models.layers.dropout import dropout, fold
from fjft.models.layers.embed import Embed
from fjft.models.layers.kv_cache import Cache
from fjft.models.layers.linear import Linear, param
from fjft.models.llama import modules as llama_modules
from fjft.models.llama.rope import apply_rope, rope_inv_freq


class RMSNorm(nnx.Module):
  """x / rms(x) * (1 + weight), in float32, as Gemma's.

  `weight` holds HF's own tensor (zero at init, as HF draws it), so checkpoints load
  and export bit for bit.
  """

  def __init__(self, dim: int, eps: float, *, stack: int | None = None, rngs: nnx.Rngs,
               axis: str | None = "embed"):
    self.eps = eps
    self.weight = param(rngs, jax.nn.initializers.zeros, (dim,), (axis,), stack)

  def __call__(self, x: jax.Array, dtype: jnp.dtype) -> jax.Array:
    x = x.astype(jnp.float32)
    y = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.eps)
    return (y * (1.0 + self.weight[...])).astype(dtype)


def softcap(x: jax.Array, cap: float | None) -> jax.Array:
  """cap * tanh(x / cap), or x for cap None."""
  return x if cap is None else jnp.tanh(x / cap) * cap


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, *, scale: float,
           cap: float | None, impl: str | None, dropout_rate: float,
           key: jax.Array | None) -> jax.Array:
  """Grouped-query attention, q [B,T,N,D], k/v [B,S,K,D] -> [B,T,N,D], logits scaled by
  `scale` and soft-capped by `cap`. Without a cap or dropout it is
  jax.nn.dot_product_attention (`impl`); otherwise plain XLA ops, in HF's order."""
  k, v = k.astype(q.dtype), v.astype(q.dtype)
  drop = key is not None and dropout_rate > 0.0
  if cap is None and not drop:
    return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=scale, implementation=impl)
  b, t, n, d = q.shape
  groups = n // k.shape[2]
  qg = q.reshape(b, t, k.shape[2], groups, d)
  logits = jnp.einsum("btkgd,bskd->bkgts", qg, k, preferred_element_type=jnp.float32)
  logits = softcap(logits * scale, cap)
  logits = jnp.where(mask[:, :, None], logits, jnp.finfo(jnp.float32).min)
  probs = dropout(jax.nn.softmax(logits, axis=-1), dropout_rate, key if drop else None)
  out = jnp.einsum("bkgts,bskd->btkgd", probs.astype(v.dtype), v)
  return out.reshape(b, t, n, d)


def _layer_flag(table: tuple[bool, ...], layer: jax.Array) -> jax.Array:
  """table[layer] for a traced layer index (a bool scalar)."""
  return jnp.asarray(np.asarray(table, bool))[layer]


class Attention(llama_modules.Attention):
  """Llama's grouped-query attention (its q/k/v/o projections), with Gemma's scale,
  soft-capping, Gemma 3's q/k norms, and a per-layer sliding window and RoPE."""

  def __init__(self, cfg: Config, *, stack: int | None, rngs: nnx.Rngs):
    super().__init__(cfg, stack=stack, rngs=rngs)
    if cfg.qk_norm:
      self.q_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps, stack=stack, rngs=rngs,
                            axis=None)
      self.k_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps, stack=stack, rngs=rngs,
                            axis=None)

  def __call__(self, cfg: Config, x: jax.Array, rope: tuple[jax.Array, ...],
               mask: jax.Array, kv: tuple[jax.Array, jax.Array] | None,
               layer: jax.Array, cache_index: jax.Array, key: jax.Array | None,
               dtype: jnp.dtype):
    b, t, _ = x.shape
    d = cfg.head_dim
    sliding = cfg.sliding_layers()
    slides = _layer_flag(sliding, layer) if any(sliding) else None
    if len(rope) == 4:  # Gemma 3: (cos, sin) of the global layers, then the sliding ones'
      rope = rope[:2] if slides is None else tuple(
          jnp.where(slides, local, full) for full, local in zip(rope[:2], rope[2:]))
    q = self.q_proj(x, dtype, fold(key, 10)).reshape(b, t, cfg.num_heads, d)
    k = self.k_proj(x, dtype, fold(key, 11)).reshape(b, t, cfg.num_kv_heads, d)
    v = self.v_proj(x, dtype, fold(key, 12)).reshape(b, t, cfg.num_kv_heads, d)
    if cfg.qk_norm:
      q, k = self.q_norm(q, dtype), self.k_norm(k, dtype)
    q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    k, v, kv = kv_cache.write_cache(kv, k, v, layer, cache_index)
    if slides is not None:
      # The model's mask is causal over every slot; sliding layers keep the last W.
      q_slots = cache_index + jnp.arange(t, dtype=jnp.int32)
      s = jnp.arange(mask.shape[-1], dtype=jnp.int32)
      window = s[None, :] > q_slots[:, None] - cfg.sliding_window
      mask = mask & (window | ~slides)
    ctx = attend(q, k, v, mask, scale=cfg.attention_scale, cap=cfg.attention_softcap,
                 impl=cfg.attention_impl, dropout_rate=cfg.attention_dropout, key=key)
    return self.o_proj(ctx.reshape(b, t, -1), dtype, fold(key, 13)), kv


class MLP(llama_modules.MLP):
  """down(act(gate(x)) * up(x)) with Gemma's activation (GeGLU, tanh GELU)."""

  def __call__(self, cfg: Config, x: jax.Array, dtype: jnp.dtype,
               key: jax.Array | None = None) -> jax.Array:
    act = ACTIVATIONS[cfg.hidden_act]
    gated = (act(self.gate_proj(x, dtype, fold(key, 0))) * self.up_proj(x, dtype, fold(key, 1)))
    return self.down_proj(gated, dtype, fold(key, 2))


class Block(decoder.PreNormBlock):
  """Gemma's layer: x + attn(norm(x)), then x + mlp(norm(x))."""

  PARTS = ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp")
  NORM, EPS, ATTENTION, FEED_FORWARD = RMSNorm, "rms_norm_eps", Attention, MLP


class SandwichBlock(nnx.Module):
  """Gemma 2/3's layer: x + post_norm(attn(pre_norm(x))), likewise for the MLP, dropout
  on each branch (keys folded as decoder.PreNormBlock folds them)."""

  def __init__(self, cfg: Config, *, stack: int | None = None, rngs: nnx.Rngs):
    def norm():
      return RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, stack=stack, rngs=rngs)
    self.input_layernorm = norm()
    self.self_attn = Attention(cfg, stack=stack, rngs=rngs)
    self.post_attention_layernorm = norm()
    self.pre_feedforward_layernorm = norm()
    self.mlp = MLP(cfg, stack=stack, rngs=rngs)
    self.post_feedforward_layernorm = norm()

  def __call__(self, cfg, x, extra, mask, kv, layer, cache_index, key, dtype):
    y, kv = self.self_attn(cfg, self.input_layernorm(x, dtype), extra, mask, kv, layer,
                           cache_index, fold(key, 0), dtype)
    y = self.post_attention_layernorm(y, dtype)
    x = x + dropout(y, cfg.hidden_dropout, fold(key, 1))
    y = self.mlp(cfg, self.pre_feedforward_layernorm(x, dtype), dtype, fold(key, 3))
    y = self.post_feedforward_layernorm(y, dtype)
    return x + dropout(y, cfg.hidden_dropout, fold(key, 2)), kv


def inv_freqs(cfg: Config) -> list[np.ndarray]:
  """RoPE inverse frequencies [head_dim / 2] (float32, as transformers): of every layer,
  or (Gemma 3) of the global layers, then of the sliding ones."""
  out = [rope_inv_freq(cfg)]
  if cfg.rope_local_theta is not None:
    out.append(rope_inv_freq(types.SimpleNamespace(
        head_dim=cfg.head_dim, rope_theta=cfg.rope_local_theta, rope_scaling=None)))
  return out


class Model(decoder.DecoderLM):
  """Gemma-family causal LM returning float32 logits (final soft-capping included) and
  the new cache; see decoder.DecoderLM for the call."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embed_tokens = Embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"),
                              cfg.initializer_range, rngs=rngs)
    self.layers = decoder.make_layers(cfg, SandwichBlock if cfg.sandwich_norms else Block,
                                      rngs)
    self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, stack=None, rngs=rngs)
    self.lm_head = None if cfg.tie_word_embeddings else Linear(
        cfg.hidden_size, (cfg.vocab_size,), ("embed", "vocab"), None,
        cfg.initializer_range, stack=None, rngs=rngs)

  def embed(self, input_ids, positions, dropout_key, dtype):
    rope = []
    for inv_freq in inv_freqs(self.cfg):
      angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
      angles = jnp.concatenate([angles, angles], axis=-1)
      rope += [jnp.cos(angles), jnp.sin(angles)]
    x = jnp.take(self.embed_tokens.embedding[...], input_ids, axis=0).astype(dtype)
    # HF multiplies by sqrt(hidden_size) cast to the embedding's dtype.
    return x * jnp.asarray(self.cfg.hidden_size ** 0.5, dtype), tuple(rope)

  def finish(self, x, dtype):
    embed = self.embed_tokens.embedding[...]
    # float_kernel: an untied head's LoRA adapter (or quantised kernel) counts too.
    head = embed.T if self.lm_head is None else lora.float_kernel(self.lm_head)
    return self.norm(x, dtype), head

  def features(self, input_ids, positions, **kwargs) -> decoder.Features:
    f = super().features(input_ids, positions, **kwargs)
    return dataclasses.replace(f, logit_softcap=self.cfg.final_logit_softcapping)


def init_cache(cfg: Config, batch: int, max_len: int,
               dtype: jnp.dtype = jnp.float32) -> Cache:
  """An empty cache, k and v [num_layers, batch, max_len, num_kv_heads, D] (every layer
  keeps every slot: sliding layers mask the old ones)."""
  return kv_cache.new_cache(cfg.num_layers, batch, max_len, cfg.num_kv_heads,
                            cfg.head_dim, dtype)
