"""BM25 against a worked example, and the search helpers (top-k, reciprocal rank fusion)."""

import math

import numpy as np
import pytest

from fjft.tasks.retrieval.bm25 import BM25, tokenize
from fjft.tasks.retrieval.ranking import reciprocal_rank_fusion, top_k, top_k_of_scores


def test_bm25_worked_example():
  docs = ["the cat sat", "the dog sat on the mat", "cats and dogs"]
  bm = BM25(docs, k1=1.2, b=0.75)
  lengths = [3, 6, 3]
  avgdl = 4.0
  n = 3

  def term(tf, df, length):
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / avgdl))

  scores = bm.scores(["the sat", "dog"])
  # "the": df 2 (tf 1 in doc 0, 2 in doc 1); "sat": df 2; "dog": df 1 (only doc 1: "dogs" differs)
  assert scores[0, 0] == pytest.approx(term(1, 2, 3) + term(1, 2, 3))
  assert scores[0, 1] == pytest.approx(term(2, 2, 6) + term(1, 2, 6))
  assert scores[0, 2] == 0.0
  assert scores[1, 1] == pytest.approx(term(1, 1, 6))
  assert scores[1, 0] == scores[1, 2] == 0.0
  # repeated query words count again; unknown words add nothing
  again = bm.scores(["dog dog unknownword"])
  assert again[0, 1] == pytest.approx(2 * term(1, 1, 6))


def test_tokenize_lowercases_word_runs():
  assert tokenize("Mach-number, HEAT transfer!") == ["mach", "number", "heat", "transfer"]


def test_top_k_is_exact_and_orders_ties_by_index():
  rng = np.random.default_rng(0)
  q, d = rng.normal(size=(5, 8)), rng.normal(size=(50, 8))
  idx, val = top_k(q, d, 7, batch=2)
  full = q @ d.T
  for i in range(5):
    assert list(idx[i]) == list(np.argsort(-full[i], kind="stable")[:7])
    np.testing.assert_allclose(val[i], full[i, idx[i]], rtol=1e-6)
  ties = np.array([[1.0, 2.0, 2.0, 0.0]])
  assert top_k_of_scores(ties, 3)[0].tolist() == [[1, 2, 0]]
  assert top_k_of_scores(ties, 10)[0].tolist() == [[1, 2, 0, 3]]


def test_reciprocal_rank_fusion_by_hand():
  fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], k=60)
  # a: 1/61 + 1/62, c: 1/63 + 1/61, b: 1/62
  assert fused == ["a", "c", "b"]
  assert reciprocal_rank_fusion([["a", "b"], ["b", "a"]], k=1, depth=1) == ["a"]
