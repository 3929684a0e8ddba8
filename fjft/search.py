"""python -m fjft.search --run=<run dir> --corpus=<file> --query="..." [--query=...] [--k=10]
                       [--hybrid] [--output=<hits.jsonl>]

Exact top-k search over a corpus with a fine-tuned (or any retrieval run's) embedder: the
corpus is embedded once and cached in <run>/search_cache/, keyed by the corpus file's
sha256, its columns and the checkpoint, so later searches embed only the queries. With
--hybrid the embedding ranking is fused with BM25's by reciprocal rank fusion.

The corpus file (jsonl, csv, tsv, parquet) has a text column (--text_column, "text"),
optionally a title column (prepended, as in training) and an id column (else the row number).
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
from absl import app, flags

from fjft import allocator, cli
from fjft.tasks.retrieval import embedding
from fjft.tasks.retrieval.bm25 import BM25
from fjft.tasks.retrieval.ranking import reciprocal_rank_fusion, top_k, top_k_of_scores
from fjft.data import readers
from fjft.data.clean import normalize_text
from fjft.errors import DataError, FjftError, exit_on_user_error
from fjft.run.rundir import file_fingerprint

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
                            stats=readers.BadRowStats(), optional=optional)
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


@exit_on_user_error
def main(argv):
  cli.begin(argv)
  f = flags.FLAGS
  if not f.query:
    raise FjftError("give at least one --query")
  run = embedding.load(f.run)
  ids, texts, empty = read_corpus(f.corpus, f.text_column, f.title_column, f.id_column)
  key = corpus_cache_key(f.corpus, (f.text_column, f.title_column, f.id_column), run.best_step)
  cache = os.path.join(f.run, "search_cache", f"{key}.npy")
  if os.path.isfile(cache):
    docs = np.load(cache)
    print(f"corpus: {len(ids)} documents, embeddings from the cache {cache}")
  else:
    docs = embedding.embed_texts(run, texts, f.batch_size, "doc")
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    np.save(cache + ".tmp.npy", docs)
    os.replace(cache + ".tmp.npy", cache)
    print(f"corpus: embedded {len(ids)} documents"
          + (f" ({empty} without text skipped)" if empty else "") + f"; cached in {cache}")
  queries = embedding.embed_texts(run, list(f.query), f.batch_size, "query")
  depth = max(f.k, 100) if f.hybrid else f.k
  idx, scores = top_k(queries, docs, depth)
  if f.hybrid:
    lexical = BM25(texts).scores(list(f.query))
    bm25_idx, _ = top_k_of_scores(lexical, depth)
    fused = [reciprocal_rank_fusion([list(a), list(b)], depth=f.k) for a, b in zip(idx, bm25_idx)]
  out = open(f.output, "w") if f.output else None
  try:
    for qi, query in enumerate(f.query):
      print(f"\nquery: {query}")
      ranked = fused[qi] if f.hybrid else list(idx[qi][:f.k])
      score_of = dict(zip(idx[qi].tolist(), scores[qi].tolist()))
      hits = []
      for rank, d in enumerate(ranked, 1):
        d = int(d)
        sim = float(queries[qi] @ docs[d]) if d not in score_of else score_of[d]
        hits.append({"rank": rank, "id": ids[d], "score": round(sim, 6), "text": texts[d]})
        print(f"  {rank:3d}. [{ids[d]}] {sim:.4f}  {texts[d][:100]}")
      if out:
        out.write(json.dumps({"query": query, "hits": hits}) + "\n")
  finally:
    if out:
      out.close()


if __name__ == "__main__":
  flags.DEFINE_string("run", None, "A retrieval run directory.", required=True)
  flags.DEFINE_string("corpus", None, "Corpus file (jsonl, csv, tsv, parquet).", required=True)
  flags.DEFINE_multi_string("query", [], "A query (repeat for several).")
  flags.DEFINE_integer("k", 10, "Hits per query.")
  flags.DEFINE_bool("hybrid", False, "Fuse with BM25 (reciprocal rank fusion).")
  flags.DEFINE_string("text_column", "text", "Corpus text column.")
  flags.DEFINE_string("title_column", "title", "Corpus title column, prepended when present.")
  flags.DEFINE_string("id_column", "id", "Corpus id column (else the row number).")
  flags.DEFINE_integer("batch_size", 64, "Texts per forward pass.")
  flags.DEFINE_string("output", None, "Also write the hits as jsonl, one line per query.")
  allocator.reexec()  # before anything allocates: see fjft/allocator.py
  app.run(main)
