"""The modules of a Llama-family decoder: grouped-query attention with RoPE, the gated
MLP, pre-norm blocks, and the model with its KV cache."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fjft.models import decoder
from fjft.models.layers import kv_cache, lora
from fjft.models.layers.attention import attend
from fjft.models.layers.dropout import fold
from fjft.models.layers.embed import Embed
from fjft.models.layers.kv_cache import Cache
from fjft.models.layers.linear import Linear
from fjft.models.layers.norms import RMSNorm
from fjft.models.llama.config import Config
from fjft.models.llama.rope import apply_rope, rope_inv_freq


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
    k, v, kv = kv_cache.write_cache(kv, k, v, layer, cache_index)
    ctx = attend(q, k, v, mask, impl=cfg.attention_impl,
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

  def __call__(self, cfg: Config, x: jax.Array, dtype: jnp.dtype,
               key: jax.Array | None = None) -> jax.Array:
    """`key` draws the dropout of adapters on the projections, if any."""
    gated = (jax.nn.silu(self.gate_proj(x, dtype, fold(key, 0)))
             * self.up_proj(x, dtype, fold(key, 1)))
    return self.down_proj(gated, dtype, fold(key, 2))


class Block(decoder.PreNormBlock):
  """Pre-norm decoder layer: x + attn(norm(x)), then x + mlp(norm(x))."""

  PARTS = ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp")
  NORM, EPS, ATTENTION, FEED_FORWARD = RMSNorm, "rms_norm_eps", Attention, MLP


class Model(decoder.DecoderLM):
  """Llama-family causal LM returning float32 logits (and the new cache); see
  decoder.DecoderLM for the call."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embed_tokens = Embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"),
                              cfg.initializer_range, rngs=rngs)
    self.layers = decoder.make_layers(cfg, Block, rngs)
    self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, stack=None,
                        rngs=rngs)
    self.lm_head = None if cfg.tie_word_embeddings else Linear(
        cfg.hidden_size, (cfg.vocab_size,), ("embed", "vocab"), None,
        cfg.initializer_range, stack=None, rngs=rngs)

  def sliding_window(self) -> int | None:
    return self.cfg.sliding_window

  def embed(self, input_ids, positions, dropout_key, dtype):
    angles = (positions.astype(jnp.float32)[..., None] *
              jnp.asarray(rope_inv_freq(self.cfg)))
    angles = jnp.concatenate([angles, angles], axis=-1)
    rope = (jnp.cos(angles), jnp.sin(angles))
    return jnp.take(self.embed_tokens.embedding[...], input_ids, axis=0).astype(dtype), rope

  def finish(self, x, dtype):
    embed = self.embed_tokens.embedding[...]
    # float_kernel: an untied head's LoRA adapter (or quantised kernel) counts here too.
    head = embed.T if self.lm_head is None else lora.float_kernel(self.lm_head)
    return self.norm(x, dtype), head


def init_cache(cfg: Config, batch: int, max_len: int,
               dtype: jnp.dtype = jnp.float32) -> Cache:
  """An empty cache, k and v [num_layers, batch, max_len, num_kv_heads, D]."""
  return kv_cache.new_cache(cfg.num_layers, batch, max_len, cfg.num_kv_heads,
                            cfg.head_dim, dtype)
