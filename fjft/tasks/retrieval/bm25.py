"""BM25 (Okapi), the lexical baseline a fine-tuned search model must beat.

score(q, d) = sum over the query's tokens t (repeats count) of
  idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl)),
  idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))   (never negative).
Tokens are the lowercased runs of word characters: no stemming, no stop words. The
document side is precomputed as one sparse [docs, vocabulary] matrix, so scoring a batch
of queries is one sparse product, the full [queries, docs] matrix that hybrid search, the
baseline and negative mining use.

This is bm25s's method="atire" with idf_method="lucene" (its "lucene" alone drops the
constant k1 + 1), and it is kept rather than bm25s because it is faster here:
tests/tasks/retrieval/test_bm25_bm25s.py checks the two give the same scores (to 1e-12, so
the same rankings) and measures them on Cranfield (1,398 abstracts, all 225 queries, 2 CPU
cores): index 70 ms and score 7 ms here against 86 ms and 10 ms for bm25s 0.3.16, which
scores one query at a time (float32 unless told float64); on the abstracts repeated 20
times (27,960) 1.4 s and 0.21 s against 2.1 s and 0.16 s.
"""

from __future__ import annotations

import re

import numpy as np
import scipy.sparse as sp

_TOKEN = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
  return _TOKEN.findall(text.lower())


class BM25:

  def __init__(self, documents: list[str], k1: float = 1.2, b: float = 0.75):
    self.k1, self.b = k1, b
    self.vocab: dict[str, int] = {}
    rows, cols, counts = [], [], []
    lengths = np.zeros(len(documents), np.float64)
    for i, doc in enumerate(documents):
      tokens = tokenize(doc)
      lengths[i] = len(tokens)
      tf: dict[int, int] = {}
      for t in tokens:
        j = self.vocab.setdefault(t, len(self.vocab))
        tf[j] = tf.get(j, 0) + 1
      rows += [i] * len(tf)
      cols += list(tf)
      counts += list(tf.values())
    n = len(documents)
    tf = sp.csr_matrix((np.asarray(counts, np.float64), (rows, cols)),
                       shape=(n, len(self.vocab)))
    df = np.bincount(np.asarray(cols, np.int64), minlength=len(self.vocab))
    self.idf = np.log1p((n - df + 0.5) / (df + 0.5))
    avgdl = lengths.mean() if n else 1.0
    norm = k1 * (1 - b + b * lengths / max(avgdl, 1e-9))   # per document
    tf = tf.tocoo()
    weights = (self.idf[tf.col] * tf.data * (k1 + 1) / (tf.data + norm[tf.row]))
    self.weights = sp.csr_matrix((weights, (tf.row, tf.col)), shape=tf.shape)

  def query_matrix(self, queries: list[str]) -> sp.csr_matrix:
    """Token counts of each query over the documents' vocabulary (unknown tokens drop out)."""
    rows, cols = [], []
    for i, q in enumerate(queries):
      for t in tokenize(q):
        j = self.vocab.get(t)
        if j is not None:
          rows.append(i)
          cols.append(j)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(queries), len(self.vocab)))

  def scores(self, queries: list[str]) -> np.ndarray:
    """[len(queries), len(documents)] BM25 scores."""
    return np.asarray((self.query_matrix(queries) @ self.weights.T).todense())
