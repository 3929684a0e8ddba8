"""Next-token cross-entropy for causal LMs, projected onto the vocabulary in chunks.

A 128k vocabulary at 8 x 2048 tokens would be 8 GB of float32 logits, kept again for the
backward pass. There the hidden states are cut into chunks of tokens; each chunk is
projected, reduced to its loss and dropped, and the backward pass recomputes it
(jax.checkpoint), so at most one chunk's logits [chunk, vocab] exist at a time. When the
whole batch's logits fit in LOGITS_BUDGET_BYTES (SmolLM2's 49k vocabulary at 8 x 256
tokens: 400 MB) they are computed once and kept for the backward pass: recomputing them
would cost another vocabulary projection per step (about 7% of a SmolLM2 step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fjft.models import decoder


def shifted_targets(input_ids: jax.Array, loss_mask: jax.Array,
                    segment_ids: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """(targets [B, T], weights [B, T]): token t predicts token t + 1.

  The weight of position t is the loss mask of token t + 1, and 0 where t + 1 starts
  another packed segment or lies past the row.
  """
  targets = jnp.concatenate([input_ids[:, 1:], jnp.zeros_like(input_ids[:, :1])], axis=1)
  weights = jnp.concatenate([loss_mask[:, 1:], jnp.zeros_like(loss_mask[:, :1])], axis=1)
  weights = weights.astype(jnp.float32)
  if segment_ids is not None:
    same = jnp.concatenate([segment_ids[:, 1:] == segment_ids[:, :-1],
                            jnp.zeros_like(segment_ids[:, :1], dtype=bool)], axis=1)
    weights = weights * same
  return targets, weights


# The most float32 logits one loss computation holds at a time.
LOGITS_BUDGET_BYTES = 512 * 2**20


def cross_entropy(features: decoder.Features, targets: jax.Array, weights: jax.Array, *,
                  chunk_tokens: int | None = None) -> tuple[jax.Array, jax.Array]:
  """(sum of weighted token cross-entropies, sum of weights), both float32 scalars.

  features: the decoder's final hidden states [B, T, H] and head [H, V];
  targets: int32 [B, T]; weights: float32 [B, T] (0 leaves a token out);
  chunk_tokens: tokens projected at a time (default: as many as LOGITS_BUDGET_BYTES holds).
  """
  h = features.hidden.shape[-1]
  x = features.hidden.reshape(-1, h)
  y = targets.reshape(-1)
  w = weights.reshape(-1).astype(jnp.float32)
  n = x.shape[0]
  head, dtype = features.head, features.compute_dtype
  cap = features.logit_softcap
  if chunk_tokens is None:
    chunk_tokens = max(1, LOGITS_BUDGET_BYTES // (4 * head.shape[-1]))
  if n <= chunk_tokens:
    return jnp.sum(_token_losses(x, y, head, dtype, cap) * w), jnp.sum(w)
  chunk = chunk_tokens
  pad = -n % chunk
  if pad:  # padded tokens weigh 0
    x = jnp.pad(x, ((0, pad), (0, 0)))
    y = jnp.pad(y, (0, pad))
    w = jnp.pad(w, (0, pad))
  x = x.reshape(-1, chunk, h)
  y = y.reshape(-1, chunk)
  w = w.reshape(-1, chunk)

  @jax.checkpoint
  def chunk_loss(xc, yc, wc):
    return jnp.sum(_token_losses(xc, yc, head, dtype, cap) * wc)

  def body(total, chunk_inputs):
    return total + chunk_loss(*chunk_inputs), None

  total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), (x, y, w))
  return total, jnp.sum(w)


def _token_losses(x: jax.Array, y: jax.Array, head: jax.Array, dtype,
                  cap: float | None = None) -> jax.Array:
  """Cross-entropy of each token: x [N, H] projected by head [H, V] (logits soft-capped
  by `cap`, if set), targets y [N]."""
  logits = decoder.project(x, head, dtype, cap)
  lse = jax.nn.logsumexp(logits, axis=-1)
  return lse - jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
