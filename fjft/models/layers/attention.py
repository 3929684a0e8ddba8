"""Causal self-attention for decoders: which key slots each query sees (padding, a
sliding window, packed segments, a KV cache), and grouped-query attention with
optional dropout on the probabilities."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fjft.models.layers.dropout import dropout


def attention_mask(q_slots: jax.Array, kv_len: int, kv_mask: jax.Array | None,
                   sliding_window: int | None,
                   segment_ids: jax.Array | None = None) -> jax.Array:
  """Boolean [B or 1, 1, T, S]: which key slots each query may attend to.

  Query t sits at slot q_slots[t]; it sees slots s <= q_slots[t] (within the
  sliding window, if any) whose kv_mask is True and, with `segment_ids`
  ([B, T], no cache: packed examples), whose segment is the query's own. Its
  own slot is always visible: real tokens have it in kv_mask anyway, and a
  padding query then never has an empty row, whose softmax would be NaN on
  some backends.
  """
  s = jnp.arange(kv_len)[None, :]
  q = q_slots[:, None]
  allowed = s <= q
  if sliding_window is not None:
    allowed &= s > q - sliding_window
  allowed = allowed[None]  # [1, T, S]
  if kv_mask is not None:
    allowed = allowed & (kv_mask.astype(bool)[:, None, :] | (s == q)[None])
  if segment_ids is not None:
    allowed = allowed & (segment_ids[:, :, None] == segment_ids[:, None, :])
  return allowed[:, None]


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, *,
           impl: str | None, dropout_rate: float,
           key: jax.Array | None) -> jax.Array:
  """Grouped-query attention: q [B,T,N,D], k/v [B,S,K,D] -> [B,T,N,D]."""
  k, v = k.astype(q.dtype), v.astype(q.dtype)
  if key is None or dropout_rate == 0.0:
    return jax.nn.dot_product_attention(q, k, v, mask=mask,
                                        implementation=impl)
  # jax.nn.dot_product_attention cannot drop attention probabilities, so
  # training with attention dropout runs the same math as plain XLA ops.
  b, t, n, d = q.shape
  groups = n // k.shape[2]
  qg = q.reshape(b, t, k.shape[2], groups, d)
  logits = jnp.einsum("btkgd,bskd->bkgts", qg, k,
                      preferred_element_type=jnp.float32) * d ** -0.5
  logits = jnp.where(mask[:, :, None], logits, jnp.finfo(jnp.float32).min)
  probs = dropout(jax.nn.softmax(logits, axis=-1), dropout_rate, key)
  out = jnp.einsum("bkgts,bskd->btkgd", probs.astype(v.dtype), v)
  return out.reshape(b, t, n, d)
