"""Ranking metrics over graded relevance judgements (qrels), as trec_eval defines them.

qrels: {query id: {doc id: gain}}; a gain > 0 is relevant, 0 is judged not relevant.
run:   {query id: [doc ids, best first]}.
nDCG@k uses the gains linearly (sum of gain / log2(rank + 1), divided by the ideal
ordering's); MRR@k, Recall@k and MAP count any gain > 0 as relevant. Every metric is the
mean over the queries of `qrels` that have a relevant document; a query missing from `run`
scores 0.
"""

from __future__ import annotations

import math

NDCG_K = 10
MRR_K = 10
RECALL_K = 100
# MAP is computed over this many ranked documents (trec_eval's default depth).
MAP_DEPTH = 1000
RANK_DEPTH = max(NDCG_K, MRR_K, RECALL_K, MAP_DEPTH)


def ndcg_at(ranked: list, gains: dict, k: int) -> float:
  dcg = sum(gains.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
  ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:k]
  idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
  return dcg / idcg if idcg > 0 else 0.0


def reciprocal_rank_at(ranked: list, gains: dict, k: int) -> float:
  for i, d in enumerate(ranked[:k]):
    if gains.get(d, 0) > 0:
      return 1.0 / (i + 1)
  return 0.0


def recall_at(ranked: list, gains: dict, k: int) -> float:
  relevant = {d for d, g in gains.items() if g > 0}
  return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def average_precision(ranked: list, gains: dict, depth: int = MAP_DEPTH) -> float:
  relevant = {d for d, g in gains.items() if g > 0}
  hits, total = 0, 0.0
  for i, d in enumerate(ranked[:depth]):
    if d in relevant:
      hits += 1
      total += hits / (i + 1)
  return total / len(relevant) if relevant else 0.0


NAMES = (f"ndcg@{NDCG_K}", f"mrr@{MRR_K}", f"recall@{RECALL_K}", "map")


def evaluate(run: dict, qrels: dict) -> dict:
  """{"ndcg@10", "mrr@10", "recall@100", "map"}: means over the judged queries."""
  judged = [q for q, gains in qrels.items() if any(g > 0 for g in gains.values())]
  if not judged:
    return {f"ndcg@{NDCG_K}": 0.0, f"mrr@{MRR_K}": 0.0, f"recall@{RECALL_K}": 0.0, "map": 0.0}
  sums = {f"ndcg@{NDCG_K}": 0.0, f"mrr@{MRR_K}": 0.0, f"recall@{RECALL_K}": 0.0, "map": 0.0}
  for q in judged:
    ranked, gains = run.get(q, []), qrels[q]
    sums[f"ndcg@{NDCG_K}"] += ndcg_at(ranked, gains, NDCG_K)
    sums[f"mrr@{MRR_K}"] += reciprocal_rank_at(ranked, gains, MRR_K)
    sums[f"recall@{RECALL_K}"] += recall_at(ranked, gains, RECALL_K)
    sums["map"] += average_precision(ranked, gains)
  return {k: v / len(judged) for k, v in sums.items()}
