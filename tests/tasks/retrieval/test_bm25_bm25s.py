"""fjft's BM25 against bm25s (the maintained library) on the same tokens: the same scores.

fjft's formula is bm25s's method="atire" term frequency ((k1 + 1) tf / (tf + k1 (1 - b +
b |d| / avgdl))) with its "lucene" idf (ln(1 + (N - df + 0.5) / (df + 0.5))); bm25s's
method="lucene" alone drops the (k1 + 1), a constant factor that ranks the same. bm25s
scores in float32 unless told float64.

Run as a script to measure both on Cranfield (index the 1,398 abstracts, then score all
225 queries as a full [queries, documents] matrix; best of 5), from the repository root:

  PYTHONPATH=. python tests/tasks/retrieval/test_bm25_bm25s.py [path to the cranfield folder]
"""

import os
import sys
import time

import bm25s
import numpy as np
import pytest

from fjft.tasks.retrieval.bm25 import BM25, tokenize


def bm25s_scores(docs, queries, k1=1.2, b=0.75, method="atire", idf_method="lucene"):
  """[queries, docs] scores from bm25s, indexed on fjft's tokens."""
  ref = bm25s.BM25(k1=k1, b=b, method=method, idf_method=idf_method, dtype="float64")
  ref.index([tokenize(d) for d in docs], show_progress=False)
  out = np.zeros((len(queries), len(docs)))
  for i, q in enumerate(queries):
    ids = ref.get_tokens_ids(tokenize(q))   # unknown words drop out; repeats stay
    if ids:
      out[i] = ref.get_scores_from_ids(ids)
  return out


def test_bm25_equals_bm25s_on_the_same_tokens():
  docs = ["the cat sat", "the dog sat on the mat", "cats and dogs", "Mach-number heat heat",
          "a b c d e f g h i j k l m n o p", "dog"]
  queries = ["the sat", "dog", "dog dog unknownword", "heat transfer", "nothing known", "",
             "THE Cat, the mat"]
  for k1, b in ((1.2, 0.75), (0.9, 0.4), (2.0, 1.0)):
    ours = BM25(docs, k1=k1, b=b).scores(queries)
    np.testing.assert_allclose(ours, bm25s_scores(docs, queries, k1, b), rtol=1e-12, atol=0)
  # bm25s's "lucene" variant is the same up to the factor k1 + 1
  np.testing.assert_allclose(BM25(docs).scores(queries),
                             2.2 * bm25s_scores(docs, queries, method="lucene"), rtol=1e-12)


def _cranfield(folder):
  from experiments.retrieval_cranfield import get_config
  from fjft.tasks.retrieval import data as ir_data
  cfg = get_config()
  cfg.data.path = folder
  return ir_data.load_collection(cfg.data)


def test_bm25_equals_bm25s_on_cranfield(shared_data):
  from fjft.tasks.retrieval import metrics as ir_metrics
  from fjft.tasks.retrieval.ranking import top_k_of_scores
  data = _cranfield(os.path.join(shared_data, "cranfield"))
  qids = data.split_queries("test")
  queries = [data.queries[q] for q in qids]
  ours = BM25(data.doc_texts).scores(queries)
  theirs = bm25s_scores(data.doc_texts, queries)
  np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
  m = {}
  for name, scores in (("fjft", ours), ("bm25s", theirs)):
    idx, _ = top_k_of_scores(scores, ir_metrics.RANK_DEPTH)
    run = {q: [data.doc_ids[j] for j in row] for q, row in zip(qids, idx)}
    m[name] = ir_metrics.evaluate(run, data.split_qrels("test"))
  assert m["fjft"] == m["bm25s"]
  # the BM25 baseline of docs/results.md (retrieval_cranfield, test queries)
  assert m["fjft"] == {"ndcg@10": pytest.approx(0.348897, abs=1e-6),
                       "mrr@10": pytest.approx(0.485730, abs=1e-6),
                       "recall@100": pytest.approx(0.712233, abs=1e-6),
                       "map": pytest.approx(0.287546, abs=1e-6)}


def _best_of(fn, n=5):
  times = []
  for _ in range(n):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


if __name__ == "__main__":
  data = _cranfield(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/cranfield")
  docs, queries = data.doc_texts, list(data.queries.values())
  print(f"{len(docs)} documents, {len(queries)} queries")
  bm = BM25(docs)
  ref = bm25s.BM25(k1=1.2, b=0.75, method="atire", idf_method="lucene", dtype="float64")
  ref.index([tokenize(d) for d in docs], show_progress=False)
  print(f"fjft : index {_best_of(lambda: BM25(docs)) * 1e3:.1f} ms, score "
        f"{_best_of(lambda: bm.scores(queries)) * 1e3:.1f} ms")
  index_s = _best_of(lambda: bm25s.BM25(k1=1.2, b=0.75, method="atire", idf_method="lucene",
                                        dtype="float64").index([tokenize(d) for d in docs],
                                                               show_progress=False))
  score_s = _best_of(lambda: np.stack([ref.get_scores(tokenize(q)) for q in queries]))
  print(f"bm25s: index {index_s * 1e3:.1f} ms, score {score_s * 1e3:.1f} ms")
  print("max |difference| of the score matrices:",
        np.abs(bm.scores(queries) - bm25s_scores(docs, queries)).max())
