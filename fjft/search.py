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

from absl import app, flags

from fjft import allocator, cli, tasks
from fjft.errors import FjftError, exit_on_user_error
from fjft.run import opened


@exit_on_user_error
def main(argv):
  cli.begin(argv)
  f = flags.FLAGS
  if not f.query:
    raise FjftError("give at least one --query")
  cli.check_output(f.output, corpus=f.corpus)
  run = opened.open_run(f.run, "search")
  tasks.get(run.task).search(run, corpus=f.corpus, queries=list(f.query), k=f.k,
                             hybrid=f.hybrid, text_column=f.text_column,
                             title_column=f.title_column, id_column=f.id_column,
                             batch_size=f.batch_size, output=f.output)


if __name__ == "__main__":
  flags.DEFINE_string("run", None, "A retrieval run directory.", required=True)
  flags.DEFINE_string("corpus", None, "Corpus file (jsonl, csv, tsv, parquet).", required=True)
  flags.DEFINE_multi_string("query", [], "A query (repeat for several).")
  flags.DEFINE_integer("k", 10, "Hits per query.", lower_bound=1)
  flags.DEFINE_bool("hybrid", False, "Fuse with BM25 (reciprocal rank fusion).")
  flags.DEFINE_string("text_column", "text", "Corpus text column.")
  flags.DEFINE_string("title_column", "title", "Corpus title column, prepended when present.")
  flags.DEFINE_string("id_column", "id", "Corpus id column (else the row number).")
  flags.DEFINE_integer("batch_size", 64, "Texts per forward pass.", lower_bound=1)
  flags.DEFINE_string("output", None, "Also write the hits as jsonl, one line per query.")
  allocator.reexec()  # before anything allocates: see fjft/allocator.py
  app.run(main, flags_parser=cli.plain_flags_parser)
