"""Search data: a corpus, queries and relevance judgements, split by query.

The files are read by fjft.tasks.retrieval.formats (cranfield, beir, pairs). Queries
without a split of their own are split deterministically: with data.test_every=N the
queries numbered N, 2N, ... (file order, from 1) are the test queries, else a hashed
data.test_fraction of them; dev is then a hashed data.dev_fraction of the rest
(fjft.data.splits.hashed_choice). Test queries never train.

With data.drop_duplicates (the default) a query whose text is that of an earlier query
of its split is dropped from train and dev (its judgements join the earlier query's), and
a train query whose text is also a dev or test query, or a dev query's also a test
query's, is dropped; test is kept as it is. Each is counted in the data report.

Bad input (an empty document or query, a judgement naming an unknown query or document,
a malformed line, a query left without relevant documents) stops with file and line, or
with data.on_bad_row="skip" is skipped and counted in the data report.

The report's retrieval keys: format, files, documents, queries, judgements, train_pairs;
per split queries, judgements, relevant_per_query, query_words (printed by report_lines).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fjft.data import dedup
from fjft.data import readers
from fjft.data import report as report_lib
from fjft.data.clean import normalize_text
from fjft.data.splits import hashed_choice
from fjft.errors import ConfigError, DataError
from fjft.tasks.retrieval import formats
from fjft.tasks.retrieval.formats import (  # noqa: F401  (the reasons the report names)
    BAD_JUDGEMENT, DUPLICATE_ID, EMPTY_DOCUMENT, EMPTY_QUERY, FORMATS, NO_RELEVANT,
    UNKNOWN_DOCUMENT, UNKNOWN_QUERY, detect_format)

SPLITS = ("train", "dev", "test")
MIN_DEV_QUERIES = 20


@dataclasses.dataclass
class Collection:
  """A corpus with judged queries, split by query."""

  doc_ids: list[str]
  doc_texts: list[str]                 # cleaned, in doc_ids' order
  queries: dict[str, str]              # query id -> cleaned text, file order
  qrels: dict[str, dict[str, int]]     # query id -> {doc id: gain}; gain > 0 is relevant
  split_of: dict[str, str]             # query id -> "train" | "dev" | "test"
  negatives: dict[str, list[str]]      # query id -> doc ids given as negatives (pairs files)
  report: dict

  def split_queries(self, split: str) -> list[str]:
    return [q for q in self.queries if self.split_of.get(q) == split]

  def split_qrels(self, split: str) -> dict[str, dict[str, int]]:
    return {q: self.qrels[q] for q in self.split_queries(split)}


def _cleaned(rows, kind: str, empty_reason: str, bad: dict) -> tuple[dict, dict]:
  """({id: normalised text}, {id: where}) of (id, text, where) rows, in order; a repeated
  id or an empty text is a bad row."""
  texts, wheres = {}, {}
  for row_id, text, where in rows:
    text = normalize_text(text)
    if row_id in texts:
      readers.bad_row(where, DUPLICATE_ID, f"{kind} id {row_id!r} appears again", **bad)
    elif not text:
      readers.bad_row(where, empty_reason, f"{kind} {row_id!r} has no text", **bad)
    else:
      texts[row_id], wheres[row_id] = text, where
  return texts, wheres


def load_collection(data_cfg: Any) -> Collection:
  """Reads, cleans, checks and splits data_cfg.path (see the module docstring)."""
  path = data_cfg.path
  if not path:
    raise ConfigError("data.path is empty: set it to a search data folder or pairs file")
  fmt = data_cfg.format
  if fmt not in FORMATS:
    raise ConfigError(f"data.format must be one of {', '.join(FORMATS)}, got {fmt!r}")
  if fmt == "auto":
    fmt = detect_format(path)
  readers.check_on_bad_row(data_cfg.on_bad_row)
  stats = readers.BadRowStats()
  bad = dict(on_bad_row=data_cfg.on_bad_row, stats=stats)
  raw = formats.read(fmt, path, data_cfg, bad)

  docs, _ = _cleaned(raw.docs, "document", EMPTY_DOCUMENT, bad)
  doc_ids, doc_texts, known_docs = list(docs), list(docs.values()), set(docs)
  queries, query_where = _cleaned(raw.queries, "query", EMPTY_QUERY, bad)
  qrels: dict[str, dict[str, int]] = {}
  for qid, doc_id, gain, where in raw.judgements:
    if qid not in queries:
      readers.bad_row(where, UNKNOWN_QUERY, f"judgement names query {qid!r}, which is not "
                      "among the (kept) queries", **bad)
    elif doc_id not in known_docs:
      readers.bad_row(where, UNKNOWN_DOCUMENT, f"judgement names document {doc_id!r}, which is"
                      " not in the (kept) corpus", **bad)
    else:
      qrels.setdefault(qid, {})[doc_id] = max(gain, qrels.get(qid, {}).get(doc_id, gain))
  for qid in list(queries):
    if not any(g > 0 for g in qrels.get(qid, {}).values()):
      readers.bad_row(query_where[qid], NO_RELEVANT,
                      f"query {qid!r} has no relevant document (no judgement with gain > 0)",
                      **bad)
      del queries[qid]
      qrels.pop(qid, None)
  if not doc_ids:
    raise DataError(f"{path}: no documents left to search ({stats.total} skipped)")
  if not queries:
    raise DataError(f"{path}: no judged queries left ({stats.total} skipped)")

  split_of = _split(list(queries), raw.split_of, data_cfg)
  negatives = {q: [d for d in ds if d in known_docs] for q, ds in raw.negatives.items()
               if q in queries}
  collection = Collection(doc_ids=doc_ids, doc_texts=doc_texts, queries=queries, qrels=qrels,
                          split_of=split_of, negatives=negatives, report={})
  assigned = {split: len(collection.split_queries(split)) for split in SPLITS}
  removed = {split: readers.BadRowStats() for split in SPLITS}
  # A config.json written before the field existed lacks it, and meant no dedup.
  if getattr(data_cfg, "drop_duplicates", False):
    _drop_duplicates(collection, query_where, removed)
  collection.report = _report(collection, fmt, raw, data_cfg, stats=stats, assigned=assigned,
                              removed=removed)
  if not collection.split_queries("train"):
    raise DataError(f"{path}: no training queries after the split (data.test_every, "
                    "data.test_fraction, data.dev_fraction leave none)")
  return collection


def _split(query_ids: list[str], given: dict[str, str], data_cfg) -> dict[str, str]:
  """query id -> split: the files' own split where they give one; test by the configured
  rule when they name no test queries; dev carved from train when they name no dev."""
  split_of = {q: given[q] for q in query_ids if q in given}
  free = [q for q in query_ids if q not in split_of]
  if free and "test" not in split_of.values():
    if data_cfg.test_every > 0:
      # query number = position in the queries file, from 1 (what the bar's split counts)
      number = {q: i for i, q in enumerate(query_ids, 1)}
      test = {q for q in free if number[q] % data_cfg.test_every == 0}
    else:
      test = {free[i] for i in hashed_choice(free, data_cfg.test_fraction, data_cfg.split_seed,
                                             salt="test:")}
    split_of.update({q: "test" for q in test})
  split_of.update({q: "train" for q in free if q not in split_of})
  if "dev" not in split_of.values():
    train = [q for q in query_ids if split_of[q] == "train"]
    dev = hashed_choice(train, data_cfg.dev_fraction, data_cfg.split_seed, salt="dev:",
                        keep_one=True)
    split_of.update({train[i]: "dev" for i in dev})
  return split_of


def _drop_duplicates(c: Collection, query_where: dict[str, str],
                     removed: dict[str, readers.BadRowStats]) -> None:
  """Repeated query texts within train and dev, and across splits (fjft.data.dedup)."""
  def merge(repeat: str, first: str) -> None:
    for doc, gain in c.qrels[repeat].items():
      c.qrels[first][doc] = max(gain, c.qrels[first].get(doc, gain))
    c.negatives.setdefault(first, []).extend(
        d for d in c.negatives.get(repeat, []) if d not in c.negatives[first])

  kept = dedup.dedup_splits({split: c.split_queries(split) for split in SPLITS},
                            c.queries.get, query_where.get, removed, what="query", merge=merge)
  kept_ids = {q for qids in kept.values() for q in qids}
  for q in [q for q in c.queries if q not in kept_ids]:
    del c.queries[q], c.qrels[q], c.split_of[q]
    c.negatives.pop(q, None)


def _split_source(split: str, raw: formats.Raw, data_cfg) -> str:
  if split in raw.split_files:
    return raw.split_files[split]
  if split == "test" and data_cfg.test_every > 0:
    n = data_cfg.test_every
    return f"the queries numbered {n}, {2 * n}, ... (data.test_every)"
  fraction = {"test": data_cfg.test_fraction, "dev": data_cfg.dev_fraction}.get(split)
  if fraction is None:
    return "the queries not held out"
  return (f"a hashed {fraction:g} of the {'train ' if split == 'dev' else ''}queries "
          f"(data.{split}_fraction, split_seed {data_cfg.split_seed})")


def _report(c: Collection, fmt: str, raw: formats.Raw, data_cfg, *, stats: readers.BadRowStats,
            assigned: dict[str, int], removed: dict[str, readers.BadRowStats]) -> dict:
  """`stats`: the bad entries (skipped before the split); `assigned`: queries per split
  before duplicates were dropped; `removed`: what was dropped from each split."""
  splits, lengths = {}, {}
  for split in SPLITS:
    qids = c.split_queries(split)
    relevant = [sum(g > 0 for g in c.qrels[q].values()) for q in qids]
    words = [len(c.queries[q].split()) for q in qids]
    # bad entries are skipped before the split: they are counted at the top level (unsplit)
    splits[split] = report_lib.split_entry(
        _split_source(split, raw, data_cfg), assigned[split], len(qids), readers.BadRowStats(),
        removed[split], queries=len(qids), judgements=sum(len(c.qrels[q]) for q in qids),
        relevant_per_query=report_lib.length_percentiles(relevant),
        query_words=report_lib.length_percentiles(words))
    lengths[split] = report_lib.length_stats(words, "query words")
  train_pairs = sum(sum(g >= data_cfg.min_gain for g in c.qrels[q].values())
                    for q in c.split_queries("train"))
  warnings = []
  if train_pairs < data_cfg.min_train_examples:
    warnings.append(
        f"only {train_pairs} training pairs (query, relevant document) from "
        f"{splits['train']['queries']} queries: under {data_cfg.min_train_examples}, fine-tuning "
        "may not beat the pretrained model (hundreds to thousands of judged queries help); "
        "compare dev against zero_shot and BM25 in results.json")
  if splits["dev"]["queries"] < MIN_DEV_QUERIES:
    warnings.append(f"dev has {splits['dev']['queries']} queries: model selection on so few "
                    "is noisy")
  return report_lib.build_report(
      "retrieval", source=data_cfg.path, settings=report_lib.settings_of(data_cfg),
      splits=splits, lengths=lengths, warnings=warnings, unsplit=stats, format=fmt,
      files=raw.files,
      documents={"read": len(raw.docs), "kept": len(c.doc_ids),
                 "words": report_lib.length_percentiles(len(t.split()) for t in c.doc_texts)},
      queries={"read": len(raw.queries), "kept": len(c.queries)},
      judgements={"read": len(raw.judgements), "kept": sum(len(v) for v in c.qrels.values())},
      train_pairs=train_pairs)


def report_lines(report: dict):
  """Retrieval's part of format_report: (what follows "data: <path> " on the header, lines
  under the header, split -> lines under it)."""
  d, q, j = report["documents"], report["queries"], report["judgements"]
  top = [f"  corpus  {d['read']} documents read -> {d['kept']} kept; words p50 "
         f"{d['words']['p50']}, p90 {d['words']['p90']}, max {d['words']['max']}",
         f"  queries {q['read']} read -> {q['kept']} kept; judgements {j['read']} read -> "
         f"{j['kept']} kept; training pairs {report['train_pairs']}"]
  per_split = lambda s: [f"{s['judgements']} judgements; relevant per query p50 "
                         f"{s['relevant_per_query']['p50']}, max {s['relevant_per_query']['max']}"]
  return f"(format {report['format']!r})", top, per_split
