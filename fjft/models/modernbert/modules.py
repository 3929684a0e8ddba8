"""The modules of a ModernBERT encoder: embeddings, pre-norm layers with RoPE attention
(global, or local within a sliding window) and a GeGLU MLP, the final norm.

HF ModernBERT may unpad the batch (an efficiency trick of its flash-attention path); here
batches stay padded and the attention masks padding instead, which gives the same states
at the real tokens."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.models.bert.modules import cudnn_key_lengths
from fjft.models.layers.activations import ACTIVATIONS
from fjft.models.layers.attention import attend
from fjft.models.layers.dropout import dropout, fold
from fjft.models.layers.embed import Embed
from fjft.models.layers.linear import Linear
from fjft.models.layers.norms import LayerNorm
from fjft.models.llama.rope import apply_rope
from fjft.models.modernbert.config import LOCAL, Config


def _norm(cfg: Config, rngs: nnx.Rngs) -> LayerNorm:
  return LayerNorm(cfg.hidden_size, cfg.norm_eps, bias=cfg.norm_bias, rngs=rngs)


def rope_tables(cfg: Config, theta: float, t: int) -> tuple[jax.Array, jax.Array]:
  """(cos, sin) [1, T, head_dim] of positions 0..T-1, in transformers' float32 order."""
  d = cfg.head_dim
  inv_freq = np.float32(1.0) / np.power(np.float32(theta),
                                        np.arange(0, d, 2, dtype=np.float32) / np.float32(d))
  freqs = jnp.arange(t, dtype=jnp.float32)[:, None] * jnp.asarray(inv_freq)[None, :]
  emb = jnp.concatenate([freqs, freqs], axis=-1)[None]
  return jnp.cos(emb), jnp.sin(emb)


def attention_masks(cfg: Config, attention_mask: jax.Array) -> dict[bool, jax.Array]:
  """{local?: boolean [B, 1, T, S]}: real keys (within the window for local layers); each
  query also sees itself, so that no row (a padding query far from any real token) is
  empty, whose softmax would be NaN."""
  t = attention_mask.shape[1]
  q, s = jnp.arange(t)[:, None], jnp.arange(t)[None, :]
  real = attention_mask.astype(bool)[:, None, None, :] | (q == s)[None, None]
  return {False: real, True: real & (jnp.abs(q - s) <= cfg.window)[None, None]}


class Embeddings(nnx.Module):
  """Token embeddings, LayerNorm, dropout (no positions: RoPE in the attention)."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.tok_embeddings = Embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"),
                                cfg.initializer_range, rngs=rngs)
    self.norm = _norm(cfg, rngs)

  def __call__(self, cfg: Config, input_ids, key, dtype):
    x = jnp.take(self.tok_embeddings.embedding[...], input_ids, axis=0)
    return dropout(self.norm(x, dtype), cfg.embedding_dropout, key)


class Attention(nnx.Module):
  """Fused-QKV self-attention with RoPE, then the output projection (HF Wqkv, Wo)."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    h, std = cfg.hidden_size, cfg.initializer_range
    bias = cfg.attention_bias
    self.qkv = Linear(h, (3, h), ("embed", None, "heads"), (None, "heads") if bias else None,
                      std, stack=None, rngs=rngs)
    self.output = Linear(h, (h,), ("heads", "embed"), ("embed",) if bias else None, std,
                         stack=None, rngs=rngs)

  def __call__(self, cfg: Config, x, local: bool, rope, masks, attention_mask, key, dtype):
    b, t, _ = x.shape
    qkv = self.qkv(x, dtype, fold(key, 10)).reshape(b, t, 3, cfg.num_heads, cfg.head_dim)
    q, k, v = (y.squeeze(2) for y in jnp.split(qkv, 3, axis=2))
    cos, sin = rope
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    if cfg.attention_impl == "cudnn" and (key is None or cfg.attention_dropout == 0.0):
      window = (cfg.window, cfg.window) if local else None
      ctx = jax.nn.dot_product_attention(
          q, k, v, key_value_seq_lengths=cudnn_key_lengths(attention_mask),
          local_window_size=window, implementation="cudnn")
    else:
      ctx = attend(q, k, v, masks[local], impl=cfg.attention_impl,
                   dropout_rate=cfg.attention_dropout, key=fold(key, 0))
    out = self.output(ctx.reshape(b, t, cfg.hidden_size), dtype, fold(key, 11))
    return dropout(out, cfg.attention_dropout, fold(key, 1))


class MLP(nnx.Module):
  """GeGLU: Wi's two halves (input, gate) -> act(input) * gate -> dropout -> Wo."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    h, i, std = cfg.hidden_size, cfg.intermediate_size, cfg.initializer_range
    bias = cfg.mlp_bias
    self.wi = Linear(h, (2, i), ("embed", None, "mlp"), (None, "mlp") if bias else None, std,
                     stack=None, rngs=rngs)
    self.wo = Linear(i, (h,), ("mlp", "embed"), ("embed",) if bias else None, std,
                     stack=None, rngs=rngs)

  def __call__(self, cfg: Config, x, key, dtype):
    y = self.wi(x, dtype, fold(key, 10))
    act = ACTIVATIONS[cfg.hidden_act](y[..., 0, :]) * y[..., 1, :]
    return self.wo(dropout(act, cfg.hidden_dropout, fold(key, 0)), dtype, fold(key, 11))


class Layer(nnx.Module):
  """One pre-norm layer: x + attn(attn_norm(x)), then + mlp(mlp_norm(x)). Layer 0 has no
  attention norm (the embeddings' norm precedes it)."""

  def __init__(self, cfg: Config, index: int, *, rngs: nnx.Rngs):
    self.local = cfg.layer_types[index] == LOCAL
    self.attn_norm = _norm(cfg, rngs) if index > 0 else None
    self.attn = Attention(cfg, rngs=rngs)
    self.mlp_norm = _norm(cfg, rngs)
    self.mlp = MLP(cfg, rngs=rngs)

  def __call__(self, cfg: Config, x, ropes, masks, attention_mask, key, dtype):
    h = x if self.attn_norm is None else self.attn_norm(x, dtype)
    x = x + self.attn(cfg, h, self.local, ropes[self.local], masks, attention_mask,
                      fold(key, 0), dtype)
    return x + self.mlp(cfg, self.mlp_norm(x, dtype), fold(key, 1), dtype)


class Model(nnx.Module):
  """ModernBERT encoder (HF ModernBertModel) returning (sequence_output, cls): it has no
  pooler; the second output is the [CLS] token's final state."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embeddings = Embeddings(cfg, rngs=rngs)
    self.layers = nnx.List([Layer(cfg, i, rngs=rngs) for i in range(cfg.num_layers)])
    self.final_norm = _norm(cfg, rngs)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
               token_type_ids: jax.Array | None = None, *,
               dropout_key: jax.Array | None = None,
               compute_dtype: jnp.dtype = jnp.float32) -> tuple[jax.Array, jax.Array]:
    """Encodes a batch (as fjft.models.bert.Model; token_type_ids are ignored: ModernBERT
    has none); returns ([B, T, H] states, [B, H] the [CLS] state)."""
    del token_type_ids
    cfg = self.cfg
    t = input_ids.shape[1]
    x = self.embeddings(cfg, input_ids, fold(dropout_key, 0), compute_dtype)
    ropes = {False: rope_tables(cfg, cfg.global_rope_theta, t),
             True: rope_tables(cfg, cfg.local_rope_theta, t)}
    masks = attention_masks(cfg, attention_mask)
    for i, layer in enumerate(self.layers):
      x = layer(cfg, x, ropes, masks, attention_mask, fold(dropout_key, i + 1), compute_dtype)
    x = self.final_norm(x, compute_dtype)
    return x, x[:, 0]
