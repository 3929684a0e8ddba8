"""Preference losses on per-sequence log-probs: DPO, IPO, SimPO, ORPO.

Every pair is a chosen and a rejected reply to one prompt; `logps` are the summed log-probs
of each reply's tokens (and its end of turn) [B, 2], `counts` their token counts. The
formulas are those of the papers as TRL implements them (the tests hold each to TRL's
value): DPO's sigmoid loss on the log-ratio difference to the reference (with
`label_smoothing`, conservative DPO), IPO's squared loss on per-token averages, SimPO's
reference-free sigmoid loss on per-token averages less a target margin, ORPO's mean NLL of
the chosen reply less beta times the log-sigmoid of the log odds ratio (per-token averages).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fjft.models import decoder

# Kinds that compare with a reference model; SimPO and ORPO need none.
WITH_REFERENCE = ("dpo", "ipo")
# Kinds whose log-probs are per-token averages (the rest use sums).
AVERAGED = ("ipo", "simpo", "orpo")


def token_logps(features: decoder.Features, targets: jax.Array, *,
                rows_per_chunk: int | None = None) -> jax.Array:
  """log p(targets) [B, T] from the decoder's final features, projected onto the
  vocabulary a few rows at a time (jax.checkpoint: the backward pass recomputes a chunk's
  logits rather than keeping every row's)."""
  b, t, h = features.hidden.shape
  vocab = features.head.shape[-1]
  if rows_per_chunk is None:   # about 512 MB of float32 logits at a time
    rows_per_chunk = max(1, (512 * 2**20) // (4 * t * vocab))
  rows_per_chunk = min(rows_per_chunk, b)
  pad = -b % rows_per_chunk
  x = jnp.pad(features.hidden, ((0, pad), (0, 0), (0, 0))).reshape(-1, rows_per_chunk, t, h)
  y = jnp.pad(targets, ((0, pad), (0, 0))).reshape(-1, rows_per_chunk, t)

  @jax.checkpoint
  def chunk(xc, yc):
    logits = decoder.project(xc, features.head, features.compute_dtype, features.logit_softcap)
    logits = logits.astype(jnp.float32)
    picked = jnp.take_along_axis(logits, yc[..., None], axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)

  out = jax.lax.map(lambda args: chunk(*args), (x, y))
  return out.reshape(-1, t)[:b]


def sequence_logps(features: decoder.Features, input_ids: jax.Array, loss_mask: jax.Array
                   ) -> tuple[jax.Array, jax.Array]:
  """(summed log-probs [N], token counts [N]) of each row's trained tokens: token t + 1
  predicted from position t, where loss_mask marks t + 1."""
  targets = jnp.concatenate([input_ids[:, 1:], jnp.zeros_like(input_ids[:, :1])], axis=1)
  weights = jnp.concatenate([loss_mask[:, 1:], jnp.zeros_like(loss_mask[:, :1])], axis=1)
  weights = weights.astype(jnp.float32)
  logps = token_logps(features, targets)
  return jnp.sum(logps * weights, axis=-1), jnp.sum(weights, axis=-1)


def log1mexp(x: jax.Array) -> jax.Array:
  """log(1 - exp(x)) for x < 0, accurate near 0 and far below it."""
  return jnp.where(x > -0.6931472, jnp.log(-jnp.expm1(x)), jnp.log1p(-jnp.exp(x)))


def pair_losses(kind: str, logps: jax.Array, counts: jax.Array, ref_logps: jax.Array | None, *,
                beta: float, label_smoothing: float = 0.0, simpo_gamma: float = 0.5
                ) -> tuple[jax.Array, jax.Array]:
  """(loss per pair [B], reward per reply [B, 2]).

  Args:
    kind: "dpo", "ipo", "simpo" or "orpo".
    logps: summed log-probs of the policy [B, 2] (chosen, rejected); counts: tokens [B, 2].
    ref_logps: the reference's summed log-probs [B, 2] (dpo and ipo), else None.
  """
  counts = jnp.maximum(counts, 1.0)
  if kind in AVERAGED:
    logps = logps / counts
    if ref_logps is not None:
      ref_logps = ref_logps / counts
  if kind in WITH_REFERENCE:
    ratios = logps - ref_logps
    delta = ratios[:, 0] - ratios[:, 1]
    rewards = beta * ratios
    if kind == "dpo":
      loss = -(1.0 - label_smoothing) * jax.nn.log_sigmoid(beta * delta) \
          - label_smoothing * jax.nn.log_sigmoid(-beta * delta)
    else:
      loss = (delta - 1.0 / (2.0 * beta)) ** 2
    return loss, rewards
  rewards = beta * logps
  if kind == "simpo":
    delta = logps[:, 0] - logps[:, 1] - simpo_gamma / beta
    loss = -(1.0 - label_smoothing) * jax.nn.log_sigmoid(beta * delta) \
        - label_smoothing * jax.nn.log_sigmoid(-beta * delta)
    return loss, rewards
  if kind == "orpo":
    return -logps[:, 0] - beta * odds_ratio_term(logps[:, 0], logps[:, 1]), rewards
  raise ValueError(f"unknown preference loss {kind!r}")


def odds_ratio_term(chosen: jax.Array, rejected: jax.Array) -> jax.Array:
  """ORPO's log-sigmoid of the log odds ratio of per-token average log-probs."""
  log_odds = (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))
  return jax.nn.log_sigmoid(log_odds)
