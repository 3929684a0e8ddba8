"""Search a corpus file with a retrieval run (`python -m fjft.search`): the corpus is
embedded once and cached in <run>/search_cache/, keyed by the corpus file's sha256, its
columns and the checkpoint, so later searches embed only the queries. With `hybrid` the
embedding ranking is fused with BM25's by reciprocal rank fusion."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from fjft.data import readers
from fjft.data.clean import normalize_text
from fjft.errors import DataError
from fjft.run.rundir import file_fingerprint
from fjft.tasks.retrieval import embedding
from fjft.tasks.retrieval.bm25 import BM25
from fjft.tasks.retrieval.ranking import reciprocal_rank_fusion, top_k, top_k_of_scores


def corpus_cache_key(corpus_path: str, columns: tuple, best_step: int) -> str:
  h = hashlib.sha256()
  h.update(json.dumps([file_fingerprint(corpus_path), list(columns), best_step]).encode())
  return h.hexdigest()[:16]


def read_corpus(path: str, text_column: str, title_column: str | None, id_column: str | None
                ) -> tuple[list[str], list[str], int]:
  """(ids, texts, skipped empty) from a corpus file; rows with no text are skipped and counted."""
  optional = [c for c in (title_column, id_column) if c]
  ids, texts, empty = [], [], 0
  rows = readers.read_table(path, {text_column: "text_column"}, on_bad_row="error",
                            stats=readers.BadRowStats(readers.INPUT_FILE_HINT), optional=optional)
  for n, (where, obj) in enumerate(rows, 1):
    if not isinstance(obj, dict) or obj.get(text_column) is None:
      raise DataError(f"{where}: no {text_column!r} value (--text_column)")
    text = str(obj[text_column])
    if title_column and obj.get(title_column):
      text = f"{obj[title_column]} {text}"
    text = normalize_text(text)
    if not text:
      empty += 1
      continue
    ids.append(str(obj[id_column]) if id_column and obj.get(id_column) is not None else str(n))
    texts.append(text)
  if not texts:
    raise DataError(f"{path}: no documents with text")
  return ids, texts, empty


def search(run, *, corpus: str, queries: list[str], k: int = 10, hybrid: bool = False,
           text_column: str = "text", title_column: str | None = "title",
           id_column: str | None = "id", batch_size: int = 64, output: str | None = None) -> None:
  """Prints the top `k` documents of `corpus` for each query (and writes them to `output`
  as jsonl, one line per query)."""
  ids, texts, empty = read_corpus(corpus, text_column, title_column, id_column)
  key = corpus_cache_key(corpus, (text_column, title_column, id_column), run.best_step)
  cache = os.path.join(run.run_dir, "search_cache", f"{key}.npy")
  if os.path.isfile(cache):
    docs = np.load(cache)
    print(f"corpus: {len(ids)} documents, embeddings from the cache {cache}")
  else:
    docs = embedding.embed_texts(run, texts, batch_size, "doc")
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    np.save(cache + ".tmp.npy", docs)
    os.replace(cache + ".tmp.npy", cache)
    print(f"corpus: embedded {len(ids)} documents"
          + (f" ({empty} without text skipped)" if empty else "") + f"; cached in {cache}")
  q_vecs = embedding.embed_texts(run, list(queries), batch_size, "query")
  depth = max(k, 100) if hybrid else k
  idx, scores = top_k(q_vecs, docs, depth)
  if hybrid:
    lexical = BM25(texts).scores(list(queries))
    bm25_idx, _ = top_k_of_scores(lexical, depth)
    fused = [reciprocal_rank_fusion([list(a), list(b)], depth=k) for a, b in zip(idx, bm25_idx)]
  out = open(output, "w") if output else None
  try:
    for qi, query in enumerate(queries):
      print(f"\nquery: {query}")
      ranked = fused[qi] if hybrid else list(idx[qi][:k])
      score_of = dict(zip(idx[qi].tolist(), scores[qi].tolist()))
      hits = []
      for rank, d in enumerate(ranked, 1):
        d = int(d)
        sim = float(q_vecs[qi] @ docs[d]) if d not in score_of else score_of[d]
        hits.append({"rank": rank, "id": ids[d], "score": round(sim, 6), "text": texts[d]})
        print(f"  {rank:3d}. [{ids[d]}] {sim:.4f}  {texts[d][:100]}")
      if out:
        out.write(json.dumps({"query": query, "hits": hits}) + "\n")
  finally:
    if out:
      out.close()
