"""Ranking metrics (trec_eval through pytrec_eval) against cases worked out by hand, and
against the definitions written out by brute force on random runs."""

import math
import random

import pytest

from fjft.tasks.retrieval import metrics as ir_metrics


def one(ranked, gains, name):
  return ir_metrics.evaluate({"q": ranked}, {"q": gains})[name]


def test_ndcg_graded_by_hand():
  gains = {"a": 3, "b": 1, "c": 0}
  # ranking b, x, a: DCG = 1/log2(2) + 0 + 3/log2(4) = 1 + 1.5; ideal a, b: 3 + 1/log2(3)
  assert one(["b", "x", "a"], gains, "ndcg@10") == pytest.approx(2.5 / (3 + 1 / math.log2(3)))
  assert one(["a", "b"], gains, "ndcg@10") == pytest.approx(1.0)
  # cut at 10: a at rank 11 adds nothing; b at rank 1 gives 1 against the ideal 3 + 1/log2(3)
  filler = [f"x{i}" for i in range(9)]
  assert one(["b"] + filler + ["a"], gains, "ndcg@10") == pytest.approx(1 / (3 + 1 / math.log2(3)))


def test_mrr_recall_map_by_hand():
  gains = {"a": 2, "b": 1, "z": 0}
  ranked = ["z", "a", "q", "b"]
  assert one(ranked, gains, "mrr@10") == pytest.approx(0.5)
  assert one(ranked, gains, "recall@100") == pytest.approx(1.0)
  # relevant at ranks 2 and 4: AP = (1/2 + 2/4) / 2
  assert one(ranked, gains, "map") == pytest.approx(0.5)
  # a relevant document never retrieved still counts in the denominator
  assert one(["a"], gains, "map") == pytest.approx(0.5)
  # the cut-offs: the first relevant at rank 11 is no reciprocal rank at 10 ...
  eleven = [f"x{i}" for i in range(10)] + ["a"]
  assert one(eleven, gains, "mrr@10") == 0.0
  # ... one at rank 101 no recall at 100, and one at rank 1001 nothing to MAP
  deep = [f"x{i}" for i in range(100)] + ["a"] + [f"y{i}" for i in range(899)] + ["b"]
  assert one(deep, gains, "recall@100") == 0.0
  assert one(deep, gains, "map") == pytest.approx((1 / 101) / 2)


def test_the_given_order_counts_not_the_ids():
  # with tied scores trec_eval would order by doc id, descending ("z" before "a")
  assert one(["a", "z"], {"a": 1}, "mrr@10") == 1.0
  assert one(["1", "10", "2"], {"2": 1}, "mrr@10") == pytest.approx(1 / 3)
  # numeric ids are compared as strings on both sides
  assert ir_metrics.evaluate({7: [3, 5]}, {7: {5: 1}})["mrr@10"] == pytest.approx(0.5)


def test_evaluate_means_over_judged_queries():
  qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}, "q3": {"d": 0}}   # q3 has no relevant doc
  run = {"q1": ["a", "b"], "q2": ["x", "c"], "q3": ["d"]}
  m = ir_metrics.evaluate(run, qrels)
  assert set(m) == set(ir_metrics.NAMES) == {"ndcg@10", "mrr@10", "recall@100", "map"}
  assert m["mrr@10"] == pytest.approx((1 + 0.5) / 2)
  assert m["recall@100"] == pytest.approx((1 + 0.5) / 2)
  assert m["map"] == pytest.approx((1 + 0.25) / 2)
  # q2: DCG 1/log2(3), ideal 1 + 1/log2(3)
  assert m["ndcg@10"] == pytest.approx((1 + (1 / math.log2(3)) / (1 + 1 / math.log2(3))) / 2)
  # a judged query missing from the run, or with an empty ranking, scores 0 (trec_eval
  # would leave it out of the mean)
  for partial in ({"q1": ["a"]}, {"q1": ["a"], "q2": []}):
    assert ir_metrics.evaluate(partial, qrels) == {
        "ndcg@10": pytest.approx(0.5), "mrr@10": pytest.approx(0.5),
        "recall@100": pytest.approx(0.5), "map": pytest.approx(0.5)}
  assert ir_metrics.evaluate({}, qrels) == dict.fromkeys(ir_metrics.NAMES, 0.0)
  assert ir_metrics.evaluate(run, {"q3": {"d": 0}}) == dict.fromkeys(ir_metrics.NAMES, 0.0)


def _brute_force(ranked, gains):
  """The definitions, written out: rank r counts from 1."""
  relevant = {d for d, g in gains.items() if g > 0}
  dcg = sum(gains.get(d, 0) / math.log2(r + 1) for r, d in enumerate(ranked[:10], 1))
  ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:10]
  idcg = sum(g / math.log2(r + 1) for r, g in enumerate(ideal, 1))
  rr = next((1 / r for r, d in enumerate(ranked[:10], 1) if d in relevant), 0.0)
  recall = len(relevant & set(ranked[:100])) / len(relevant)
  hits, ap = 0, 0.0
  for r, d in enumerate(ranked[:1000], 1):
    if d in relevant:
      hits += 1
      ap += hits / r
  return {"ndcg@10": dcg / idcg, "mrr@10": rr, "recall@100": recall, "map": ap / len(relevant)}


def test_random_runs_match_the_definitions():
  rng = random.Random(0)
  docs = [f"d{i}" for i in range(1200)]
  qrels, run = {}, {}
  for q in range(40):
    judged = rng.sample(docs, rng.randint(1, 30))
    qrels[f"q{q}"] = {d: rng.choice([0, 1, 1, 2, 3, 4]) for d in judged}
    qrels[f"q{q}"][judged[0]] = rng.randint(1, 4)   # at least one relevant
    # a ranking that favours the judged documents, 1100 deep (past the MAP depth)
    run[f"q{q}"] = sorted(docs, key=lambda d: rng.random() - (0.02 if d in judged else 0))[:1100]
  got = ir_metrics.evaluate(run, qrels)
  per_query = [_brute_force(run[q], qrels[q]) for q in qrels]
  for name in ir_metrics.NAMES:
    assert got[name] == pytest.approx(sum(m[name] for m in per_query) / len(qrels), abs=1e-12)
  assert 0 < got["map"] < got["recall@100"] < 1   # the case exercises every metric
