"""The modules of a BERT-family encoder: embeddings, post-norm layers, the pooler."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fjft.errors import ConfigError
from fjft.models.bert.config import Config
from fjft.models.layers.activations import ACTIVATIONS
from fjft.models.layers.dropout import dropout, fold
from fjft.models.layers.embed import Embed
from fjft.models.layers.linear import Linear
from fjft.models.layers.norms import LayerNorm


def cudnn_key_lengths(attention_mask: jax.Array) -> jax.Array:
  """Per-row key lengths for cuDNN attention, which takes padding as lengths
  (right padding assumed).

  At least 1: a row with no tokens (the rows that fill out a short batch) would
  leave cuDNN's softmax nothing to normalise over and give NaN, which reaches
  the loss through 0 * NaN (seen on an H200: Banking77 training went NaN at the
  first short batch). Such rows weigh 0, so what they attend to does not matter.
  """
  return jnp.maximum(jnp.sum(attention_mask, axis=-1, dtype=jnp.int32), 1)


class Embeddings(nnx.Module):
  """Word + position + token-type embeddings, then LayerNorm and dropout."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    std = cfg.initializer_range
    self.word_embeddings = Embed(cfg.vocab_size, cfg.hidden_size,
                                 ("vocab", "embed"), std, rngs=rngs)
    self.position_embeddings = Embed(cfg.max_position_embeddings,
                                     cfg.hidden_size, ("position", "embed"),
                                     std, rngs=rngs)
    self.token_type_embeddings = Embed(cfg.type_vocab_size, cfg.hidden_size,
                                       ("types", "embed"), std, rngs=rngs)
    self.layer_norm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps,
                                rngs=rngs)

  def __call__(self, cfg: Config, input_ids: jax.Array,
               token_type_ids: jax.Array | None, key: jax.Array | None,
               dtype: jnp.dtype) -> jax.Array:
    seq_len = input_ids.shape[1]
    offset = cfg.position_offset
    if seq_len + offset > cfg.max_position_embeddings:
      raise ConfigError(
          f"sequence length {seq_len} exceeds what the model's"
          f" max_position_embeddings={cfg.max_position_embeddings} allows"
          f" ({cfg.max_position_embeddings - offset})")
    x = jnp.take(self.word_embeddings.embedding[...], input_ids, axis=0)
    positions = self.position_embeddings.embedding[...]
    if offset:
      # As HF create_position_ids_from_input_ids: pads keep the pad id.
      not_pad = (input_ids != cfg.pad_token_id).astype(jnp.int32)
      ids = jnp.cumsum(not_pad, axis=1) * not_pad + cfg.pad_token_id
      x = x + jnp.take(positions, ids, axis=0)
    else:
      # A static slice: its gradient is a pad, not a scatter.
      x = x + positions[None, :seq_len]
    types = self.token_type_embeddings.embedding[...]
    if token_type_ids is None:
      x = x + types[0]
    else:
      x = x + jnp.take(types, token_type_ids, axis=0)
    return dropout(self.layer_norm(x, dtype), cfg.hidden_dropout, key)


class SelfAttention(nnx.Module):
  """Fused-QKV multi-head self-attention, output projection, residual, norm."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    h, std = cfg.hidden_size, cfg.initializer_range
    self.qkv = Linear(h, (3, h), ("embed", None, "heads"), (None, "heads"),
                      std, stack=None, rngs=rngs)
    self.output = Linear(h, (h,), ("heads", "embed"), ("embed",), std,
                         stack=None, rngs=rngs)
    self.layer_norm = LayerNorm(h, cfg.layer_norm_eps, rngs=rngs)

  def __call__(self, cfg: Config, x: jax.Array, attention_mask: jax.Array,
               key: jax.Array | None, dtype: jnp.dtype) -> jax.Array:
    b, t, _ = x.shape
    # adapters' dropout keys: folded at indices the layer's own dropout does not use
    qkv = self.qkv(x, dtype, fold(key, 10)).reshape(b, t, 3, cfg.num_heads, cfg.head_dim)
    # split (not indexing): its gradient is one concatenate, not three pads
    # summed.
    q, k, v = (y.squeeze(2) for y in jnp.split(qkv, 3, axis=2))
    probs_key = fold(key, 0)
    if probs_key is not None and cfg.attention_dropout > 0.0:
      # jax.nn.dot_product_attention has no dropout on the probabilities.
      ctx = _attention_with_dropout(q, k, v, attention_mask,
                                    cfg.attention_dropout, probs_key)
    elif cfg.attention_impl == "cudnn":
      ctx = jax.nn.dot_product_attention(
          q, k, v, key_value_seq_lengths=cudnn_key_lengths(attention_mask),
          implementation="cudnn")
    else:
      mask = attention_mask.astype(bool)[:, None, None, :]
      ctx = jax.nn.dot_product_attention(q, k, v, mask=mask,
                                         implementation=cfg.attention_impl)
    out = self.output(ctx.reshape(b, t, cfg.hidden_size), dtype, fold(key, 11))
    out = dropout(out, cfg.hidden_dropout, fold(key, 1))
    return self.layer_norm(out + x, dtype)


def _attention_with_dropout(q, k, v, attention_mask, rate, key):
  """Same math as jax's XLA attention, plus dropout on the probabilities."""
  scale = q.shape[-1] ** -0.5
  logits = jnp.einsum("btnd,bsnd->bnts", q, k,
                      preferred_element_type=jnp.float32) * scale
  mask = attention_mask.astype(bool)[:, None, None, :]
  logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  probs = dropout(jax.nn.softmax(logits, axis=-1), rate, key)
  return jnp.einsum("bnts,bsnd->btnd", probs.astype(v.dtype), v)


class Layer(nnx.Module):
  """One post-norm transformer encoder layer."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    h, i, std = cfg.hidden_size, cfg.intermediate_size, cfg.initializer_range
    self.attention = SelfAttention(cfg, rngs=rngs)
    self.intermediate = Linear(h, (i,), ("embed", "mlp"), ("mlp",), std,
                               stack=None, rngs=rngs)
    self.output = Linear(i, (h,), ("mlp", "embed"), ("embed",), std, stack=None,
                         rngs=rngs)
    self.output_layer_norm = LayerNorm(h, cfg.layer_norm_eps, rngs=rngs)

  def __call__(self, cfg: Config, x: jax.Array, attention_mask: jax.Array,
               key: jax.Array | None, dtype: jnp.dtype) -> jax.Array:
    h = self.attention(cfg, x, attention_mask, fold(key, 0), dtype)
    y = ACTIVATIONS[cfg.hidden_act](self.intermediate(h, dtype, fold(key, 10)))
    y = dropout(self.output(y, dtype, fold(key, 11)), cfg.hidden_dropout, fold(key, 1))
    return self.output_layer_norm(y + h, dtype)


def _make_pooler(cfg: Config, rngs: nnx.Rngs) -> Linear:
  return Linear(cfg.hidden_size, (cfg.hidden_size,), ("embed", None), (None,),
                cfg.initializer_range, stack=None, rngs=rngs)


class Model(nnx.Module):
  """BERT-family encoder returning (sequence_output, pooled_output)."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embeddings = Embeddings(cfg, rngs=rngs)
    self.layers = nnx.List([Layer(cfg, rngs=rngs)
                            for _ in range(cfg.num_layers)])
    self.pooler = _make_pooler(cfg, rngs)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
               token_type_ids: jax.Array | None = None, *,
               dropout_key: jax.Array | None = None,
               compute_dtype: jnp.dtype = jnp.float32,
               ) -> tuple[jax.Array, jax.Array]:
    """Encodes a batch.

    Args:
      input_ids: int [B, T].
      attention_mask: [B, T], 1 for real tokens, 0 for padding.
      token_type_ids: int [B, T] or None (all segment 0).
      dropout_key: a jax PRNG key enables dropout (training); None disables
        it. Per-layer keys are derived with fold_in; no Rngs state changes.
      compute_dtype: dtype of matmuls and activations (e.g. jnp.bfloat16).
        LayerNorm statistics and softmax stay float32; params are not cast.

    Returns:
      sequence_output [B, T, H] and pooled_output [B, H] = tanh(dense(x[:, 0]))
      as HF BertPooler, both in compute_dtype.
    """
    cfg = self.cfg
    x = self.embeddings(cfg, input_ids, token_type_ids,
                        fold(dropout_key, 0), compute_dtype)
    for i, layer in enumerate(self.layers):
      x = layer(cfg, x, attention_mask, fold(dropout_key, i + 1),
                compute_dtype)
    pooled = jnp.tanh(self.pooler(x[:, 0], compute_dtype))
    return x, pooled
