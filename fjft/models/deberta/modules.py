"""The modules of a DeBERTa-v2/v3 encoder: embeddings, disentangled self-attention over
log-bucketed relative positions, post-norm layers, the optional convolution after layer 0."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.models.deberta.config import ACTS, Config
from fjft.models.layers.dropout import dropout, fold
from fjft.models.layers.embed import Embed
from fjft.models.layers.linear import Linear, param
from fjft.models.layers.norms import LayerNorm


def log_bucket_position(rel: np.ndarray, bucket_size: int, max_position: int) -> np.ndarray:
  """HF make_log_bucket_position: relative positions within +-bucket_size/2 kept, farther
  ones log-spaced up to max_position; the same float32 operations, so the buckets agree."""
  sign = np.sign(rel)
  mid = bucket_size // 2
  abs_pos = np.where((rel < mid) & (rel > -mid), mid - 1, np.abs(rel))
  ratio = abs_pos.astype(np.float32) / np.float32(mid)
  log_pos = np.ceil(np.log(ratio) / np.log(np.float32((max_position - 1) / mid))
                    * np.float32(mid - 1)) + np.float32(mid)
  return np.where(abs_pos <= mid, rel, log_pos * sign).astype(np.int64)


def relative_positions(cfg: Config, t: int) -> np.ndarray:
  """[T, T] int: bucket(i - j) of query i and key j (static: a function of T only)."""
  ids = np.arange(t, dtype=np.int64)
  rel = ids[:, None] - ids[None, :]
  if cfg.position_buckets > 0 and cfg.max_relative > 0:
    rel = log_bucket_position(rel, cfg.position_buckets, cfg.max_relative)
  return rel


class Embeddings(nnx.Module):
  """Word (+ absolute position) (+ token-type) embeddings, an optional projection to
  hidden_size, LayerNorm, padding zeroed, dropout."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    e, std = cfg.embed_dim, cfg.initializer_range
    self.word_embeddings = Embed(cfg.vocab_size, e, ("vocab", "embed"), std, rngs=rngs)
    self.position_embeddings = (Embed(cfg.max_position_embeddings, e, ("position", "embed"),
                                      std, rngs=rngs) if cfg.position_biased_input else None)
    self.token_type_embeddings = (Embed(cfg.type_vocab_size, e, ("types", "embed"), std,
                                        rngs=rngs) if cfg.type_vocab_size > 0 else None)
    self.embed_proj = (Linear(e, (cfg.hidden_size,), (None, "embed"), None, std, stack=None,
                              rngs=rngs) if e != cfg.hidden_size else None)
    self.layer_norm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, rngs=rngs)

  def __call__(self, cfg: Config, input_ids, attention_mask, token_type_ids, key, dtype):
    t = input_ids.shape[1]
    x = jnp.take(self.word_embeddings.embedding[...], input_ids, axis=0)
    if self.position_embeddings is not None:
      x = x + self.position_embeddings.embedding[...][None, :t]
    if self.token_type_embeddings is not None:
      types = self.token_type_embeddings.embedding[...]
      x = x + (types[0] if token_type_ids is None else jnp.take(types, token_type_ids, axis=0))
    if self.embed_proj is not None:
      x = self.embed_proj(x, dtype)
    x = self.layer_norm(x, dtype) * attention_mask[..., None].astype(dtype)
    return dropout(x, cfg.hidden_dropout, key)


def _linear(cfg: Config, rngs: nnx.Rngs) -> Linear:
  h = cfg.hidden_size
  return Linear(h, (h,), ("embed", "heads"), ("heads",), cfg.initializer_range, stack=None,
                rngs=rngs)


class SelfAttention(nnx.Module):
  """Disentangled self-attention: content-to-content plus, per pos_att_type,
  content-to-position (c2p) and position-to-content (p2c) terms, all over sqrt(d * (1 +
  their number)); then the output projection, residual and LayerNorm."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    h, std = cfg.hidden_size, cfg.initializer_range
    self.query, self.key, self.value = (_linear(cfg, rngs) for _ in range(3))
    rel = cfg.relative_attention and not cfg.share_att_key
    self.pos_key = _linear(cfg, rngs) if rel and "c2p" in cfg.pos_att_type else None
    self.pos_query = _linear(cfg, rngs) if rel and "p2c" in cfg.pos_att_type else None
    self.output = Linear(h, (h,), ("heads", "embed"), ("embed",), std, stack=None, rngs=rngs)
    self.layer_norm = LayerNorm(h, cfg.layer_norm_eps, rngs=rngs)

  def _heads(self, cfg: Config, y: jax.Array) -> jax.Array:
    return y.reshape(*y.shape[:-1], cfg.num_heads, cfg.head_dim)

  def __call__(self, cfg: Config, x, attention_mask, rel_embeddings, rel_pos, key, dtype):
    heads = lambda layer, y, i: self._heads(cfg, layer(y, dtype, fold(key, i)))
    q, k, v = (heads(m, x, 10 + j) for j, m in enumerate((self.query, self.key, self.value)))
    logits = jnp.einsum("btnd,bsnd->bnts", q, k, preferred_element_type=jnp.float32)
    if rel_embeddings is not None:
      span = cfg.att_span
      rel = dropout(rel_embeddings, cfg.hidden_dropout, fold(key, 2))
      if "c2p" in cfg.pos_att_type:
        pos_k = heads(self.key if cfg.share_att_key else self.pos_key, rel, 13)  # [2S, N, D]
        c2p = jnp.einsum("btnd,rnd->bntr", q, pos_k, preferred_element_type=jnp.float32)
        index = np.clip(rel_pos + span, 0, 2 * span - 1)  # [T(query), T(key)]
        logits = logits + jnp.take_along_axis(c2p, jnp.asarray(index)[None, None], axis=-1)
      if "p2c" in cfg.pos_att_type:
        pos_q = heads(self.query if cfg.share_att_key else self.pos_query, rel, 14)
        p2c = jnp.einsum("bsnd,rnd->bnsr", k, pos_q, preferred_element_type=jnp.float32)
        index = np.clip(-rel_pos + span, 0, 2 * span - 1)  # [T(key), T(query)]
        gathered = jnp.take_along_axis(p2c, jnp.asarray(index)[None, None], axis=-1)
        logits = logits + jnp.swapaxes(gathered, -1, -2)
    scale = np.sqrt(np.float32(cfg.head_dim) * np.float32(cfg.scale_factor))
    logits = logits / scale
    mask = attention_mask.astype(bool)[:, None, None, :]
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    probs = dropout(jax.nn.softmax(logits, axis=-1), cfg.attention_dropout, fold(key, 0))
    ctx = jnp.einsum("bnts,bsnd->btnd", probs.astype(v.dtype), v)
    out = self.output(ctx.reshape(*x.shape[:2], cfg.hidden_size), dtype, fold(key, 11))
    out = dropout(out, cfg.hidden_dropout, fold(key, 1))
    return self.layer_norm(out + x, dtype)


class Layer(nnx.Module):
  """One post-norm encoder layer: disentangled attention, then the feed-forward block."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    h, i, std = cfg.hidden_size, cfg.intermediate_size, cfg.initializer_range
    self.attention = SelfAttention(cfg, rngs=rngs)
    self.intermediate = Linear(h, (i,), ("embed", "mlp"), ("mlp",), std, stack=None,
                               rngs=rngs)
    self.output = Linear(i, (h,), ("mlp", "embed"), ("embed",), std, stack=None, rngs=rngs)
    self.output_layer_norm = LayerNorm(h, cfg.layer_norm_eps, rngs=rngs)

  def __call__(self, cfg: Config, x, attention_mask, rel_embeddings, rel_pos, key, dtype):
    h = self.attention(cfg, x, attention_mask, rel_embeddings, rel_pos, fold(key, 0), dtype)
    y = ACTS[cfg.hidden_act](self.intermediate(h, dtype, fold(key, 10)))
    y = dropout(self.output(y, dtype, fold(key, 11)), cfg.hidden_dropout, fold(key, 1))
    return self.output_layer_norm(y + h, dtype)


class Conv(nnx.Module):
  """HF ConvLayer (DeBERTa-v2 xlarge and up): a 1-D convolution of the embeddings, padding
  zeroed, activation, added to layer 0's output, LayerNorm, padding zeroed."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    h, k = cfg.hidden_size, cfg.conv_kernel_size
    # [width, in / groups, out] (HF Conv1d.weight [out, in / groups, width] transposed).
    self.kernel = param(rngs, jax.nn.initializers.normal(cfg.initializer_range),
                        (k, h // cfg.conv_groups, h), (None, None, "embed"), None)
    self.bias = param(rngs, jax.nn.initializers.zeros, (h,), ("embed",), None)
    self.layer_norm = LayerNorm(h, cfg.layer_norm_eps, rngs=rngs)

  def __call__(self, cfg: Config, embedded, residual, attention_mask, key, dtype):
    pad = (cfg.conv_kernel_size - 1) // 2
    out = jax.lax.conv_general_dilated(
        embedded.astype(dtype), self.kernel[...].astype(dtype), (1,), [(pad, pad)],
        dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=cfg.conv_groups,
        preferred_element_type=jnp.float32)
    m = attention_mask[..., None].astype(jnp.float32)
    out = (out + self.bias[...]) * m
    out = ACTS[cfg.conv_act](dropout(out, cfg.hidden_dropout, key))
    y = self.layer_norm(residual.astype(jnp.float32) + out, jnp.float32)
    return (y * m).astype(dtype)


class Model(nnx.Module):
  """DeBERTa-v2/v3 encoder (HF DebertaV2Model) returning (sequence_output, cls): it has no
  pooler; the second output is the [CLS] token's final state."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embeddings = Embeddings(cfg, rngs=rngs)
    self.rel_embeddings = (Embed(2 * cfg.att_span, cfg.hidden_size, ("position", "embed"),
                                 cfg.initializer_range, rngs=rngs)
                           if cfg.relative_attention else None)
    self.rel_layer_norm = (LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, rngs=rngs)
                           if cfg.relative_attention and cfg.rel_layer_norm else None)
    self.layers = nnx.List([Layer(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
    self.conv = Conv(cfg, rngs=rngs) if cfg.conv_kernel_size > 0 else None

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
               token_type_ids: jax.Array | None = None, *,
               dropout_key: jax.Array | None = None,
               compute_dtype: jnp.dtype = jnp.float32) -> tuple[jax.Array, jax.Array]:
    """Encodes a batch (as fjft.models.bert.Model: input_ids and attention_mask [B, T],
    dropout on with a key); returns ([B, T, H] states, [B, H] the [CLS] state)."""
    cfg = self.cfg
    x = self.embeddings(cfg, input_ids, attention_mask, token_type_ids,
                        fold(dropout_key, 0), compute_dtype)
    rel = rel_pos = None
    if self.rel_embeddings is not None:
      rel = self.rel_embeddings.embedding[...]
      if self.rel_layer_norm is not None:
        rel = self.rel_layer_norm(rel, compute_dtype)
      rel = rel.astype(compute_dtype)
      rel_pos = relative_positions(cfg, input_ids.shape[1])
    embedded = x
    for i, layer in enumerate(self.layers):
      x = layer(cfg, x, attention_mask, rel, rel_pos, fold(dropout_key, i + 1), compute_dtype)
      if i == 0 and self.conv is not None:
        x = self.conv(cfg, embedded, x, attention_mask, fold(dropout_key, 10_000),
                      compute_dtype)
    return x, x[:, 0]
