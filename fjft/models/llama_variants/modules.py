"""The modules of Qwen3 / OLMo 2 / Granite / SmolLM3: Llama's attention with q/k norms,
a scale and NoPE layers as the Config says, Llama's gated MLP, blocks with pre- or
post-norms and a residual multiplier, and the model with its KV cache."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.models import decoder
from fjft.models.layers import kv_cache, lora
from fjft.models.layers.attention import attend
from fjft.models.layers.dropout import dropout, fold
from fjft.models.layers.embed import Embed
from fjft.models.layers.kv_cache import Cache
from fjft.models.layers.linear import Linear, param
from fjft.models.layers.norms import RMSNorm
from fjft.models.llama.modules import MLP
from fjft.models.llama.rope import apply_rope, rope_inv_freq
from fjft.models.llama_variants.config import Config


class QKNorm(nnx.Module):
  """RMSNorm over the last axis (q or k, per head or whole), with its own logical axis:
  None for a per-head [head_dim] scale, "heads" / "kv_heads" for a whole projection's."""

  def __init__(self, dim: int, eps: float, axis: str | None, *, stack: int | None,
               rngs: nnx.Rngs):
    self.eps = eps
    self.scale = param(rngs, jax.nn.initializers.ones, (dim,), (axis,), stack)

  def __call__(self, x: jax.Array) -> jax.Array:
    xf = x.astype(jnp.float32)
    y = xf * jax.lax.rsqrt(jnp.mean(jnp.square(xf), axis=-1, keepdims=True) + self.eps)
    return (y * self.scale[...]).astype(x.dtype)


class Attention(nnx.Module):
  """Grouped-query self-attention with RoPE, optional q/k norms and an optional KV cache."""

  def __init__(self, cfg: Config, *, stack: int | None, rngs: nnx.Rngs):
    h, std, d = cfg.hidden_size, cfg.initializer_range, cfg.head_dim
    q_dim, kv_dim = cfg.num_heads * d, cfg.num_kv_heads * d

    def linear(n_in, n_out, axes):
      return Linear(n_in, (n_out,), axes, axes[1:] if cfg.attention_bias else None, std,
                    stack=stack, rngs=rngs)

    self.q_proj = linear(h, q_dim, ("embed", "heads"))
    self.k_proj = linear(h, kv_dim, ("embed", "kv_heads"))
    self.v_proj = linear(h, kv_dim, ("embed", "kv_heads"))
    self.o_proj = linear(q_dim, h, ("heads", "embed"))
    if cfg.qk_norm == "head":
      self.q_norm = QKNorm(d, cfg.rms_norm_eps, None, stack=stack, rngs=rngs)
      self.k_norm = QKNorm(d, cfg.rms_norm_eps, None, stack=stack, rngs=rngs)
    elif cfg.qk_norm == "full":
      self.q_norm = QKNorm(q_dim, cfg.rms_norm_eps, "heads", stack=stack, rngs=rngs)
      self.k_norm = QKNorm(kv_dim, cfg.rms_norm_eps, "kv_heads", stack=stack, rngs=rngs)

  def __call__(self, cfg: Config, x: jax.Array, rope: tuple[jax.Array, ...],
               mask: jax.Array, kv: tuple[jax.Array, jax.Array] | None,
               layer: jax.Array, cache_index: jax.Array, key: jax.Array | None,
               dtype: jnp.dtype):
    b, t, _ = x.shape
    d = cfg.head_dim
    # adapters' dropout keys: folded from the attention key at indices its own use avoids
    q = self.q_proj(x, dtype, fold(key, 10))
    k = self.k_proj(x, dtype, fold(key, 11))
    v = self.v_proj(x, dtype, fold(key, 12)).reshape(b, t, cfg.num_kv_heads, d)
    if cfg.qk_norm == "full":
      q, k = self.q_norm(q), self.k_norm(k)
    q = q.reshape(b, t, cfg.num_heads, d)
    k = k.reshape(b, t, cfg.num_kv_heads, d)
    if cfg.qk_norm == "head":
      q, k = self.q_norm(q), self.k_norm(k)
    if cfg.rope_layers is None:
      q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    else:  # NoPE layers keep q and k as they are; `layer` is traced under scan
      use = jnp.asarray(np.array(cfg.rope_layers))[layer]
      q = jnp.where(use, apply_rope(q, *rope), q)
      k = jnp.where(use, apply_rope(k, *rope), k)
    if cfg.attention_scale != d ** -0.5:
      # attend() scales by head_dim ** -0.5: q carries the rest of the scale.
      q = q * jnp.asarray(cfg.attention_scale * math.sqrt(d), q.dtype)
    k, v, kv = kv_cache.write_cache(kv, k, v, layer, cache_index)
    ctx = attend(q, k, v, mask, impl=cfg.attention_impl,
                 dropout_rate=cfg.attention_dropout, key=key)
    return self.o_proj(ctx.reshape(b, t, -1), dtype, fold(key, 13)), kv


class Block(nnx.Module):
  """A decoder layer. Pre-norm: x + m * attn(norm(x)), then x + m * mlp(norm(x)), m the
  residual multiplier (Granite's; 1 otherwise). OLMo 2's post-norm: x + norm(attn(x)),
  then x + norm(mlp(x)). Dropout on each branch, as decoder.PreNormBlock."""

  def __init__(self, cfg: Config, *, stack: int | None = None, rngs: nnx.Rngs):
    def norm():
      return RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, stack=stack, rngs=rngs)

    if not cfg.post_norms:
      self.input_layernorm = norm()
    self.self_attn = Attention(cfg, stack=stack, rngs=rngs)
    # Pre-norm: the MLP's input norm; OLMo 2: the attention output's norm.
    self.post_attention_layernorm = norm()
    self.mlp = MLP(cfg, stack=stack, rngs=rngs)
    if cfg.post_norms:
      self.post_feedforward_layernorm = norm()

  def __call__(self, cfg, x, rope, mask, kv, layer, cache_index, key, dtype):
    post = cfg.post_norms
    h = x if post else self.input_layernorm(x, dtype)
    y, kv = self.self_attn(cfg, h, rope, mask, kv, layer, cache_index, fold(key, 0), dtype)
    y = self.post_attention_layernorm(y, dtype) if post else y * cfg.residual_multiplier
    x = x + dropout(y, cfg.hidden_dropout, fold(key, 1))
    h = x if post else self.post_attention_layernorm(x, dtype)
    y = self.mlp(cfg, h, dtype, fold(key, 3))
    y = self.post_feedforward_layernorm(y, dtype) if post else y * cfg.residual_multiplier
    return x + dropout(y, cfg.hidden_dropout, fold(key, 2)), kv


class Model(decoder.DecoderLM):
  """Qwen3 / OLMo 2 / Granite / SmolLM3 causal LM returning float32 logits (and the new
  cache); see decoder.DecoderLM for the call."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embed_tokens = Embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"),
                              cfg.initializer_range, rngs=rngs)
    self.layers = decoder.make_layers(cfg, Block, rngs)
    self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, stack=None, rngs=rngs)
    self.lm_head = None if cfg.tie_word_embeddings else Linear(
        cfg.hidden_size, (cfg.vocab_size,), ("embed", "vocab"), None,
        cfg.initializer_range, stack=None, rngs=rngs)

  def embed(self, input_ids, positions, dropout_key, dtype):
    angles = (positions.astype(jnp.float32)[..., None] *
              jnp.asarray(rope_inv_freq(self.cfg)))
    angles = jnp.concatenate([angles, angles], axis=-1)
    rope = (jnp.cos(angles), jnp.sin(angles))
    x = jnp.take(self.embed_tokens.embedding[...], input_ids, axis=0)
    if self.cfg.embedding_multiplier != 1.0:
      x = x * self.cfg.embedding_multiplier
    return x.astype(dtype), rope

  def finish(self, x, dtype):
    embed = self.embed_tokens.embedding[...]
    # float_kernel: an untied head's LoRA adapter (or quantised kernel) counts here too.
    head = embed.T if self.lm_head is None else lora.float_kernel(self.lm_head)
    x = self.norm(x, dtype)
    if self.cfg.logits_scaling != 1.0:
      # Granite divides the logits; dividing the [B, T, H] hidden states is the same
      # and also serves the chunked loss, which projects them itself.
      x = x / jnp.asarray(self.cfg.logits_scaling, x.dtype)
    return x, head


def init_cache(cfg: Config, batch: int, max_len: int,
               dtype: jnp.dtype = jnp.float32) -> Cache:
  """An empty cache, k and v [num_layers, batch, max_len, num_kv_heads, D]."""
  return kv_cache.new_cache(cfg.num_layers, batch, max_len, cfg.num_kv_heads,
                            cfg.head_dim, dtype)
