"""Sentence embeddings for search: pooled encoder output, and the contrastive loss.

The pooling (mean over real tokens, or the [CLS] token) and the L2 normalisation follow
the model's sentence-transformers config (modules.json, 1_Pooling/config.json) when it has
one, so fjft's embeddings of a pretrained model are the ones sentence-transformers gives.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
from flax import nnx

from fjft.errors import ConfigError
from fjft.models.pooling import pool

POOLING_MODES = ("mean", "cls")


def pooling_of_model(folder: str) -> tuple[str, bool] | None:
  """(mode, normalize) from a sentence-transformers model folder, or None if it has none."""
  modules_file = os.path.join(folder, "modules.json")
  if not os.path.isfile(modules_file):
    return None
  with open(modules_file) as f:
    modules = json.load(f)
  mode, normalize = None, False
  for m in modules:
    kind = m.get("type", "")
    if kind.endswith(".Pooling"):
      with open(os.path.join(folder, m.get("path", ""), "config.json")) as f:
        pooling = json.load(f)
      if pooling.get("pooling_mode_mean_tokens"):
        mode = "mean"
      elif pooling.get("pooling_mode_cls_token"):
        mode = "cls"
      else:
        raise ConfigError(f"{folder}: the sentence-transformers pooling "
                          f"{ {k: v for k, v in pooling.items() if v is True} } is not one fjft "
                          f"has ({', '.join(POOLING_MODES)}); set model.pooling")
    elif kind.endswith(".Normalize"):
      normalize = True
  return (mode, normalize) if mode else None


def resolve_pooling(model_cfg, model_path: str) -> tuple[str, bool]:
  """model.pooling / model.normalize, where "auto" takes the model's own setting
  (mean pooling, normalised, for a model without a sentence-transformers config)."""
  found = pooling_of_model(model_path) or ("mean", True)
  mode = found[0] if model_cfg.pooling == "auto" else model_cfg.pooling
  if mode not in POOLING_MODES:
    raise ConfigError(f"model.pooling must be 'auto' or one of {', '.join(POOLING_MODES)},"
                      f" got {model_cfg.pooling!r}")
  choices = {"auto": found[1], "yes": True, "no": False}
  if model_cfg.normalize not in choices:
    raise ConfigError(f"model.normalize must be 'auto', 'yes' or 'no', got {model_cfg.normalize!r}")
  return mode, choices[model_cfg.normalize]


class Embedder(nnx.Module):
  """A pretrained encoder whose pooled output is the embedding (no new parameters)."""

  def __init__(self, encoder: nnx.Module, mode: str, normalize: bool):
    self.encoder = encoder
    self.mode, self.normalize = mode, normalize

  def __call__(self, input_ids, attention_mask, *, dropout_key=None, compute_dtype=jnp.float32):
    hidden, _ = self.encoder(input_ids, attention_mask, dropout_key=dropout_key,
                             compute_dtype=compute_dtype)
    return pool(hidden, attention_mask, self.mode, self.normalize)


def contrastive_loss(q: jax.Array, d: jax.Array, batch: dict, temperature: float,
                     symmetric: bool) -> tuple[jax.Array, jax.Array]:
  """InfoNCE with in-batch negatives: (summed loss, summed weight).

  q: [B, H] query embeddings; d: [B * G, H] document embeddings, G = 1 + hard negatives,
  grouped by query (row i * G is query i's positive, the next G - 1 its negatives).
  Query i scores every document of the batch and must pick its positive. A document that
  is relevant to query i (batch["relevant"][i], corpus indices, -1 padded) but is not its
  positive is left out of query i's softmax, not counted as a negative; so are padding rows
  (batch["doc_index"] = -1). With `symmetric`, each positive document must also pick its
  query among the batch's queries, and the two losses are averaged.
  """
  b = q.shape[0]
  g = d.shape[0] // b
  pos = jnp.arange(b) * g
  doc_index = batch["doc_index"]                             # [B * G]
  relevant = batch["relevant"]                               # [B, R]
  weights = batch["weights"]                                 # [B]
  is_relevant = (doc_index[None, :, None] == relevant[:, None, :]).any(-1)  # [B, B * G]
  own = jnp.zeros((b, b * g), bool).at[jnp.arange(b), pos].set(True)
  valid = (doc_index[None, :] >= 0) & (~is_relevant | own)
  logits = (q @ d.T) / temperature
  logits = jnp.where(valid, logits, -1e9)
  q_loss = jax.nn.logsumexp(logits, axis=-1) - logits[jnp.arange(b), pos]
  loss = q_loss
  if symmetric:
    # documents -> queries: positive doc i over the queries it is not relevant to (and its own)
    pos_index = doc_index[pos]
    d_rel = (pos_index[:, None, None] == relevant[None, :, :]).any(-1)      # [B doc, B query]
    d_valid = (weights[None, :] > 0) & (~d_rel | jnp.eye(b, dtype=bool))
    d_logits = jnp.where(d_valid, (d[pos] @ q.T) / temperature, -1e9)   # [B doc, B query]
    d_loss = jax.nn.logsumexp(d_logits, axis=-1) - jnp.diagonal(d_logits)
    loss = 0.5 * (q_loss + d_loss)
  return jnp.sum(loss * weights), jnp.sum(weights)
