"""The modules of GPT-2: fused-QKV causal attention, the MLP, pre-norm blocks, and the
model (LM head tied to the token embedding) with its KV cache."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from fjft.models import decoder
from fjft.models.gpt2.config import Config
from fjft.models.layers import kv_cache
from fjft.models.layers.activations import ACTIVATIONS
from fjft.models.layers.attention import attend
from fjft.models.layers.dropout import dropout, fold
from fjft.models.layers.embed import Embed
from fjft.models.layers.kv_cache import Cache
from fjft.models.layers.linear import Linear
from fjft.models.layers.norms import LayerNorm


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

  def __call__(self, cfg, x, extra, mask, kv, layer, cache_index, key, dtype):
    del extra  # GPT-2 adds its positions to x (wpe); there is no RoPE
    b, t, _ = x.shape
    # adapters' dropout keys: folded from the attention key at indices its own use avoids
    qkv = self.c_attn(x, dtype, fold(key, 10)).reshape(b, t, 3, cfg.num_heads, cfg.head_dim)
    q, k, v = (y.squeeze(2) for y in jnp.split(qkv, 3, axis=2))
    k, v, kv = kv_cache.write_cache(kv, k, v, layer, cache_index)
    ctx = attend(q, k, v, mask, impl=cfg.attention_impl,
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
    act = ACTIVATIONS[cfg.activation_function]
    return self.c_proj(act(self.c_fc(x, dtype, fold(key, 0))), dtype, fold(key, 1))


class Block(decoder.PreNormBlock):
  """Pre-norm GPT-2 layer: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

  PARTS = ("ln_1", "attn", "ln_2", "mlp")
  NORM, EPS, ATTENTION, FEED_FORWARD = LayerNorm, "layer_norm_eps", Attention, MLP


class Model(decoder.DecoderLM):
  """GPT-2 causal LM returning float32 logits (and the new cache); see
  decoder.DecoderLM for the call."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.cfg = cfg
    std = cfg.initializer_range
    self.wte = Embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"), std, rngs=rngs)
    self.wpe = Embed(cfg.max_position_embeddings, cfg.hidden_size, ("position", "embed"), std,
                     rngs=rngs)
    self.layers = decoder.make_layers(cfg, Block, rngs)
    self.ln_f = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, stack=None,
                          rngs=rngs)

  def embed(self, input_ids, positions, dropout_key, dtype):
    x = (jnp.take(self.wte.embedding[...], input_ids, axis=0) +
         jnp.take(self.wpe.embedding[...], positions, axis=0))
    # Layers fold their index 0..L-1 into the key; L is the embeddings'.
    x = dropout(x.astype(dtype), self.cfg.embedding_dropout,
                fold(dropout_key, self.cfg.num_layers))
    return x, None

  def finish(self, x, dtype):
    return self.ln_f(x, dtype), self.wte.embedding[...].T


def init_cache(cfg: Config, batch: int, max_len: int,
               dtype: jnp.dtype = jnp.float32) -> Cache:
  """An empty cache, k and v [num_layers, batch, max_len, num_heads, D]."""
  return kv_cache.new_cache(cfg.num_layers, batch, max_len, cfg.num_heads,
                            cfg.head_dim, dtype)
