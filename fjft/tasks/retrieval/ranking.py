"""Exact top-k search by dot product, and reciprocal rank fusion of rankings."""

from __future__ import annotations

import numpy as np

# Reciprocal rank fusion's constant: score(d) = sum over rankings of 1 / (RRF_K + rank(d)).
# 60 is the value of Cormack et al. (2009), which most systems keep.
RRF_K = 60


def top_k(queries: np.ndarray, docs: np.ndarray, k: int, batch: int = 256
          ) -> tuple[np.ndarray, np.ndarray]:
  """Exact top-k by dot product (cosine for normalised rows): (indices, scores), [Q, k]
  each, best first. Queries go in batches so [batch, docs] scores bound the memory."""
  k = min(k, docs.shape[0])
  idx = np.zeros((len(queries), k), np.int64)
  val = np.zeros((len(queries), k), np.float32)
  for s in range(0, len(queries), batch):
    scores = queries[s:s + batch] @ docs.T
    idx[s:s + batch], val[s:s + batch] = top_k_of_scores(scores, k)
  return idx, val


def top_k_of_scores(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Best k columns of each row of a score matrix; ties go to the lower index."""
  k = min(k, scores.shape[1])
  if k < scores.shape[1]:
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
  else:
    part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
  part_scores = np.take_along_axis(scores, part, axis=1)
  order = np.lexsort((part, -part_scores), axis=1)
  idx = np.take_along_axis(part, order, axis=1)
  return idx, np.take_along_axis(scores, idx, axis=1)


def reciprocal_rank_fusion(rankings: list[list[int]], k: int = RRF_K, depth: int | None = None
                           ) -> list[int]:
  """One fused ranking of several rankings (lists of ids, best first): each id scores
  sum of 1 / (k + rank), ranks from 1; ties keep the order of first appearance."""
  scores: dict[int, float] = {}
  for ranking in rankings:
    for rank, doc in enumerate(ranking, 1):
      scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
  fused = sorted(scores, key=lambda d: -scores[d])   # sorted() is stable
  return fused[:depth] if depth else fused
