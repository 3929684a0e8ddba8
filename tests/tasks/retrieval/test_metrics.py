"""Ranking metrics against cases computed by hand."""

import math

import pytest

from fjft.tasks.retrieval import metrics as ir_metrics


def test_ndcg_graded_by_hand():
  gains = {"a": 3, "b": 1, "c": 0}
  # ranking b, x, a: DCG = 1/log2(2) + 0 + 3/log2(4) = 1 + 1.5; ideal a, b: 3 + 1/log2(3)
  expected = 2.5 / (3 + 1 / math.log2(3))
  assert ir_metrics.ndcg_at(["b", "x", "a"], gains, 10) == pytest.approx(expected)
  assert ir_metrics.ndcg_at(["a", "b"], gains, 10) == pytest.approx(1.0)
  # cut at k=1: only b counts, against the ideal's first document a
  assert ir_metrics.ndcg_at(["b", "x", "a"], gains, 1) == pytest.approx(1 / 3)


def test_mrr_recall_map_by_hand():
  gains = {"a": 2, "b": 1, "z": 0}
  ranked = ["z", "a", "q", "b"]
  assert ir_metrics.reciprocal_rank_at(ranked, gains, 10) == pytest.approx(0.5)
  assert ir_metrics.reciprocal_rank_at(ranked, gains, 1) == 0.0
  assert ir_metrics.recall_at(ranked, gains, 2) == pytest.approx(0.5)
  assert ir_metrics.recall_at(ranked, gains, 100) == pytest.approx(1.0)
  # relevant at ranks 2 and 4: AP = (1/2 + 2/4) / 2
  assert ir_metrics.average_precision(ranked, gains) == pytest.approx(0.5)
  # a relevant document never retrieved still counts in the denominator
  assert ir_metrics.average_precision(["a"], gains) == pytest.approx(0.5)


def test_evaluate_means_over_judged_queries():
  qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}, "q3": {"d": 0}}   # q3 has no relevant doc
  run = {"q1": ["a", "b"], "q2": ["x", "c"]}
  m = ir_metrics.evaluate(run, qrels)
  assert m["mrr@10"] == pytest.approx((1 + 0.5) / 2)
  assert m["recall@100"] == pytest.approx((1 + 0.5) / 2)
  assert m["map"] == pytest.approx((1 + 0.25) / 2)
  assert set(m) == {"ndcg@10", "mrr@10", "recall@100", "map"}
  # a judged query missing from the run scores 0
  assert ir_metrics.evaluate({"q1": ["a"]}, qrels)["mrr@10"] == pytest.approx(0.5)
