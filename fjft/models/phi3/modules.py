"""The modules of a Phi-3 decoder: grouped-query attention from one fused qkv
projection with (partial, longrope) RoPE, the gated MLP from one fused gate_up
projection, pre-norm blocks and the model with its KV cache. The norms, the block,
the head and the cache are the Llama family's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fjft.models import decoder
from fjft.models.layers import kv_cache
from fjft.models.layers.attention import attend
from fjft.models.layers.dropout import fold
from fjft.models.layers.embed import Embed
from fjft.models.layers.linear import Linear
from fjft.models.layers.norms import RMSNorm
from fjft.models.llama import modules as llama_modules
from fjft.models.phi3.config import Config
from fjft.models.phi3.rope import apply_partial_rope, cos_sin


class Attention(nnx.Module):
  """Grouped-query self-attention; q, k and v are slices of one qkv_proj output."""

  def __init__(self, cfg: Config, *, stack: int | None, rngs: nnx.Rngs):
    h, std = cfg.hidden_size, cfg.initializer_range
    q_dim, kv_dim = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    self.qkv_proj = Linear(h, (q_dim + 2 * kv_dim,), ("embed", "heads"), None, std,
                           stack=stack, rngs=rngs)
    self.o_proj = Linear(q_dim, (h,), ("heads", "embed"), None, std, stack=stack,
                         rngs=rngs)

  def __call__(self, cfg: Config, x: jax.Array, rope: tuple[jax.Array, jax.Array],
               mask: jax.Array, kv: tuple[jax.Array, jax.Array] | None,
               layer: jax.Array, cache_index: jax.Array, key: jax.Array | None,
               dtype: jnp.dtype):
    b, t, _ = x.shape
    d = cfg.head_dim
    q_dim, kv_dim = cfg.num_heads * d, cfg.num_kv_heads * d
    # adapters' dropout keys: folded from the attention key at indices its own use avoids
    qkv = self.qkv_proj(x, dtype, fold(key, 10))
    q = apply_partial_rope(qkv[..., :q_dim].reshape(b, t, cfg.num_heads, d), *rope)
    k = apply_partial_rope(qkv[..., q_dim:q_dim + kv_dim].reshape(b, t, cfg.num_kv_heads, d),
                           *rope)
    v = qkv[..., q_dim + kv_dim:].reshape(b, t, cfg.num_kv_heads, d)
    k, v, kv = kv_cache.write_cache(kv, k, v, layer, cache_index)
    ctx = attend(q, k, v, mask, impl=cfg.attention_impl,
                 dropout_rate=cfg.attention_dropout, key=key)
    return self.o_proj(ctx.reshape(b, t, -1), dtype, fold(key, 13)), kv


class MLP(nnx.Module):
  """down(silu(gate) * up), gate and up the two halves of one gate_up_proj output."""

  def __init__(self, cfg: Config, *, stack: int | None, rngs: nnx.Rngs):
    h, i, std = cfg.hidden_size, cfg.intermediate_size, cfg.initializer_range
    self.gate_up_proj = Linear(h, (2 * i,), ("embed", "mlp"), None, std, stack=stack,
                               rngs=rngs)
    self.down_proj = Linear(i, (h,), ("mlp", "embed"), None, std, stack=stack, rngs=rngs)

  def __call__(self, cfg: Config, x: jax.Array, dtype: jnp.dtype,
               key: jax.Array | None = None) -> jax.Array:
    """`key` draws the dropout of adapters on the projections, if any."""
    gate, up = jnp.split(self.gate_up_proj(x, dtype, fold(key, 0)), 2, axis=-1)
    return self.down_proj(up * jax.nn.silu(gate), dtype, fold(key, 2))


class Block(decoder.PreNormBlock):
  """Pre-norm decoder layer; dropout on each residual branch is Phi-3's resid_pdrop."""

  PARTS = ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp")
  NORM, EPS, ATTENTION, FEED_FORWARD = RMSNorm, "rms_norm_eps", Attention, MLP


class Model(llama_modules.Model):
  """Phi-3 causal LM returning float32 logits (and the new cache); see
  decoder.DecoderLM for the call. Its head and final norm are Llama's."""

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
    return self.embed_with_cache(input_ids, positions, None, dropout_key, dtype)

  def embed_with_cache(self, input_ids, positions, cache, dropout_key, dtype):
    # transformers' Phi3 has no embedding dropout (its embd_pdrop is never applied).
    cache_len = None if cache is None else cache.k.shape[2]
    rope = cos_sin(self.cfg, positions, cache_len)
    return jnp.take(self.embed_tokens.embedding[...], input_ids, axis=0).astype(dtype), rope


def init_cache(cfg: Config, batch: int, max_len: int,
               dtype: jnp.dtype = jnp.float32) -> kv_cache.Cache:
  """An empty cache, k and v [num_layers, batch, max_len, num_kv_heads, D]."""
  return kv_cache.new_cache(cfg.num_layers, batch, max_len, cfg.num_kv_heads,
                            cfg.head_dim, dtype)
