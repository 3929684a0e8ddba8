"""Ranking metrics over graded relevance judgements (qrels), computed by trec_eval itself
(pytrec_eval-terrier, imported as pytrec_eval), the numbers IR papers report.

qrels: {query id: {doc id: gain}}; gains are non-negative integers, a gain > 0 is relevant
       and 0 is judged not relevant (fjft.tasks.retrieval.formats maps each format's
       grades to gains: Cranfield's code c in 1..4 to 5 - c, -1 to 0).
run:   {query id: [doc ids, best first]}.

  ndcg@10     trec_eval's ndcg_cut.10: the gains used linearly (sum of gain / log2(rank + 1)),
              divided by the ideal ordering's of all the query's judged gains;
  mrr@10      trec_eval's recip_rank on the run cut to its first 10 documents (recip_rank
              itself has no cut-off);
  recall@100  trec_eval's recall.100;
  map         trec_eval's map on the run cut to its first MAP_DEPTH (1000) documents,
              trec_eval's default depth; a relevant document never retrieved counts in the
              denominator.
MRR, Recall and MAP count any gain > 0 as relevant (trec_eval's relevance level 1).

trec_eval orders a query's documents by score, not by the given order, so the run goes in
with scores that fall with the rank (no ties to break). Every metric is the mean over the
queries of `qrels` that have a relevant document; a judged query missing from `run` (or
with an empty ranking) scores 0 there, where trec_eval would leave it out of the mean.
"""

from __future__ import annotations

NDCG_K = 10
MRR_K = 10
RECALL_K = 100
# MAP is computed over this many ranked documents (trec_eval's default depth).
MAP_DEPTH = 1000
RANK_DEPTH = max(NDCG_K, MRR_K, RECALL_K, MAP_DEPTH)

NAMES = (f"ndcg@{NDCG_K}", f"mrr@{MRR_K}", f"recall@{RECALL_K}", "map")
# fjft's name -> (trec_eval's measure, the depth the run is cut to for it)
_TREC = {f"ndcg@{NDCG_K}": (f"ndcg_cut_{NDCG_K}", MAP_DEPTH),
         f"mrr@{MRR_K}": ("recip_rank", MRR_K),
         f"recall@{RECALL_K}": (f"recall_{RECALL_K}", MAP_DEPTH),
         "map": ("map", MAP_DEPTH)}


def _scored(ranked: list, depth: int) -> dict[str, float]:
  """The first `depth` documents of a ranking with scores falling with the rank."""
  top = list(dict.fromkeys(str(d) for d in ranked))[:depth]   # a repeat keeps its best rank
  return {d: float(len(top) - i) for i, d in enumerate(top)}


def evaluate(run: dict, qrels: dict) -> dict:
  """{"ndcg@10", "mrr@10", "recall@100", "map"}: means over the judged queries."""
  judged = {str(q): {str(d): int(g) for d, g in gains.items()}
            for q, gains in qrels.items() if any(g > 0 for g in gains.values())}
  sums = dict.fromkeys(NAMES, 0.0)
  if not judged:
    return sums
  import pytrec_eval   # here: the module is imported at CLI start

  evaluator = pytrec_eval.RelevanceEvaluator(
      judged, {f"ndcg_cut.{NDCG_K}", "recip_rank", f"recall.{RECALL_K}", "map"})
  ranked = {str(q): list(docs) for q, docs in run.items()}
  for depth in sorted({d for _, d in _TREC.values()}):
    cut = {q: _scored(ranked[q], depth) for q in judged if ranked.get(q)}
    per_query = evaluator.evaluate(cut) if cut else {}
    for name, (measure, at) in _TREC.items():
      if at == depth:
        sums[name] = sum(m[measure] for m in per_query.values())
  return {name: total / len(judged) for name, total in sums.items()}
