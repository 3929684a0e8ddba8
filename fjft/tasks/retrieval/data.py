"""Search data: a corpus, queries and relevance judgements, split by query.

Three layouts are read (data.format, or "auto" to tell them apart by their files):
  cranfield  the classic files cran.all.1400 (.I/.T/.A/.B/.W records), cran.qry and
             cranqrel ("query doc code", code 1 best .. 4, -1 not relevant). Queries are
             numbered 1.. in file order, as cranqrel numbers them (cran.qry's .I numbers are
             not); a document's text is its title then its body (.T + .W); a code c in 1..4
             becomes the gain 5 - c, -1 the gain 0.
  beir       corpus.jsonl ({"_id", "title", "text"}), queries.jsonl ({"_id", "text"}) and
             qrels/<split>.tsv ("query-id corpus-id score" under a header; the score is the
             gain); the qrels files name the splits.
  pairs      a file, or a folder of train/dev/test files (jsonl, csv, tsv, parquet), of
             (query, positive[, negative]) rows: every distinct text becomes a document,
             every distinct query a query whose positives are relevant (gain 1).
Queries without a split of their own are split deterministically: with data.test_every=N
the queries numbered N, 2N, ... (file order, from 1) are the test queries, else a hashed
data.test_fraction of them; dev is then a hashed data.dev_fraction of the rest. Test
queries never train.

Bad input (an empty document or query, a judgement naming an unknown query or document,
a malformed line, a query left without relevant documents) stops with file and line, or
with data.on_bad_row="skip" is skipped and counted in the data report.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from typing import Any

from fjft.data import readers
from fjft.data import report as report_lib
from fjft.data.clean import normalize_text
from fjft.data.splits import hashed_choice, split_files
from fjft.errors import ConfigError, DataError

FORMATS = ("auto", "cranfield", "beir", "pairs")
CRANFIELD_FILES = ("cran.all.1400", "cran.qry", "cranqrel")
BEIR_FILES = ("corpus.jsonl", "queries.jsonl")
SPLITS = ("train", "dev", "test")
_BEIR_SPLIT_NAMES = {"train": "train", "dev": "dev", "validation": "dev", "valid": "dev",
                     "test": "test"}
# Skip-and-count reasons (the report names them).
EMPTY_DOCUMENT = "empty document"
EMPTY_QUERY = "empty query"
DUPLICATE_ID = "duplicate id"
UNKNOWN_QUERY = "judgement of an unknown query"
UNKNOWN_DOCUMENT = "judgement of an unknown document"
BAD_JUDGEMENT = "malformed judgement line"
NO_RELEVANT = "query without relevant documents"


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


@dataclasses.dataclass
class _Raw:
  """What a reader found, before splitting: texts uncleaned, ids as in the files."""

  docs: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)     # id, text, where
  queries: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)  # id, text, where
  judgements: list[tuple[str, str, int, str]] = dataclasses.field(default_factory=list)
  split_of: dict[str, str] = dataclasses.field(default_factory=dict)
  negatives: dict[str, list[str]] = dataclasses.field(default_factory=dict)
  files: list[str] = dataclasses.field(default_factory=list)


def detect_format(path: str) -> str:
  if os.path.isdir(path):
    names = set(os.listdir(path))
    if all(n in names for n in CRANFIELD_FILES):
      return "cranfield"
    if all(n in names for n in BEIR_FILES):
      return "beir"
    return "pairs"
  if os.path.isfile(path):
    return "pairs"
  raise DataError(f"data.path: {path!r} is not a file or folder")


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
  reader = {"cranfield": _read_cranfield, "beir": _read_beir, "pairs": _read_pairs}[fmt]
  raw = reader(path, data_cfg, bad)

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
  collection.report = _report(collection, fmt, raw, stats, data_cfg)
  if not collection.split_queries("train"):
    raise DataError(f"{path}: no training queries after the split (data.test_every, "
                    "data.test_fraction, data.dev_fraction leave none)")
  return collection


# ----------------------------------------------------------------------------- readers


def _cranfield_records(path: str) -> list[tuple[str, dict[str, list[str]], str]]:
  """(.I number, {field letter: lines}, "path:line") per record.

  A field marker met again inside a record's body (.W) is taken as body text that
  happens to look like a marker: the collection has a few (document 240's body holds
  ".A" and ".B" lines, 576 and 578 a second ".W").
  """
  records, field = [], None
  with open(path, encoding="utf-8", errors="replace") as f:
    for number, line in enumerate(f, 1):
      line = line.rstrip("\r\n")
      m = re.fullmatch(r"\.I\s+(\d+)\s*", line)
      if m:
        records.append((m.group(1), collections.defaultdict(list), f"{path}:{number}"))
        field = None
        continue
      if re.fullmatch(r"\.[TABW]\s*", line):
        if field != "W":
          field = line.strip()[1]
        continue
      if not records:
        raise DataError(f"{path}:{number}: text before the first .I record")
      if field is not None:
        records[-1][1][field].append(line)
  return records


def _read_cranfield(path: str, data_cfg, bad) -> _Raw:
  del data_cfg
  raw = _Raw(files=[os.path.join(path, n) for n in CRANFIELD_FILES])
  docs_file, queries_file, qrels_file = raw.files
  for doc_id, fields, where in _cranfield_records(docs_file):
    raw.docs.append((doc_id, " ".join(fields["T"] + fields["W"]), where))
  for i, (_, fields, where) in enumerate(_cranfield_records(queries_file), 1):
    raw.queries.append((str(i), " ".join(fields["W"]), where))
  with open(qrels_file, encoding="utf-8", errors="replace") as f:
    for number, line in enumerate(f, 1):
      parts = line.split()
      if not parts:
        continue
      where = f"{qrels_file}:{number}"
      if len(parts) != 3 or not all(re.fullmatch(r"-?\d+", p) for p in parts):
        readers.bad_row(where, BAD_JUDGEMENT,
                        f"expected 'query doc code' (three integers), got {line.strip()!r}", **bad)
        continue
      code = int(parts[2])
      if code not in (1, 2, 3, 4, -1):
        readers.bad_row(where, BAD_JUDGEMENT, f"relevance code {code} is not 1..4 or -1", **bad)
        continue
      raw.judgements.append((parts[0], parts[1], 5 - code if code > 0 else 0, where))
  return raw


def _read_beir(path: str, data_cfg, bad) -> _Raw:
  del data_cfg
  raw = _Raw()
  corpus, queries = (os.path.join(path, n) for n in BEIR_FILES)
  raw.files += [corpus, queries]
  for where, obj in readers.read_table(corpus, {}, **bad):
    rec = _record(obj, where, ("_id", "text"), bad)
    if rec is not None:
      title = str(obj.get("title") or "")
      raw.docs.append((str(rec["_id"]), f"{title} {rec['text']}" if title else str(rec["text"]),
                       where))
  for where, obj in readers.read_table(queries, {}, **bad):
    rec = _record(obj, where, ("_id", "text"), bad)
    if rec is not None:
      raw.queries.append((str(rec["_id"]), str(rec["text"]), where))
  qrels_dir = os.path.join(path, "qrels")
  if not os.path.isdir(qrels_dir):
    raise DataError(f"{path}: no qrels/ folder (expected qrels/train.tsv, qrels/test.tsv ...)")
  names = sorted(n for n in os.listdir(qrels_dir) if n.endswith(".tsv"))
  if not names:
    raise DataError(f"{qrels_dir}: no <split>.tsv files")
  for name in names:
    split = _BEIR_SPLIT_NAMES.get(name[:-4])
    if split is None:
      raise DataError(f"{qrels_dir}/{name}: not a split name (train, dev, validation, test)")
    qrels_file = os.path.join(qrels_dir, name)
    raw.files.append(qrels_file)
    columns = {"query-id": "qrels column", "corpus-id": "qrels column", "score": "qrels column"}
    for where, obj in readers.read_table(qrels_file, columns, **bad):
      score = str(obj["score"]).strip()
      if not re.fullmatch(r"-?\d+", score):
        readers.bad_row(where, BAD_JUDGEMENT, f"score {score!r} is not an integer", **bad)
        continue
      qid = str(obj["query-id"]).strip()
      previous = raw.split_of.setdefault(qid, split)
      if previous != split:
        raise DataError(f"{where}: query {qid!r} is judged in both {previous} and {split} qrels;"
                        " a query belongs to one split")
      raw.judgements.append((qid, str(obj["corpus-id"]).strip(), max(int(score), 0), where))
  return raw


def _read_pairs(path: str, data_cfg, bad) -> _Raw:
  files = split_files(path) if os.path.isdir(path) else {"train": path}
  raw = _Raw(files=list(files.values()))
  columns = {data_cfg.query_column: "query_column", data_cfg.positive_column: "positive_column"}
  neg = data_cfg.negative_column
  doc_id_of: dict[str, str] = {}
  query_id_of: dict[str, str] = {}

  def doc(text: str, where: str) -> str:
    text = normalize_text(text)
    if text not in doc_id_of:
      doc_id_of[text] = f"d{len(doc_id_of) + 1}"
      raw.docs.append((doc_id_of[text], text, where))
    return doc_id_of[text]

  for split, file in files.items():
    for where, obj in readers.read_table(file, columns, **bad):
      rec = _record(obj, where, tuple(columns), bad)
      if rec is None:
        continue
      query = normalize_text(str(rec[data_cfg.query_column]))
      positive = str(rec[data_cfg.positive_column])
      if not query or not normalize_text(positive):
        readers.bad_row(where, EMPTY_QUERY if not query else EMPTY_DOCUMENT,
                        "empty query" if not query else "empty positive document", **bad)
        continue
      if query not in query_id_of:
        query_id_of[query] = f"q{len(query_id_of) + 1}"
        raw.queries.append((query_id_of[query], query, where))
      qid = query_id_of[query]
      previous = raw.split_of.setdefault(qid, split) if len(files) > 1 else split
      if previous != split:
        raise DataError(f"{where}: query {query[:60]!r} is also in the {previous} file; a query "
                        "belongs to one split")
      raw.judgements.append((qid, doc(positive, where), 1, where))
      negatives = obj.get(neg) if neg and isinstance(obj, dict) else None
      for text in ([negatives] if isinstance(negatives, str) else negatives or []):
        if isinstance(text, str) and normalize_text(text):
          raw.negatives.setdefault(qid, []).append(doc(text, where))
  return raw


def _record(obj, where: str, needed: tuple[str, ...], bad) -> dict | None:
  if not isinstance(obj, dict):
    readers.bad_row(where, "not a JSON object", **bad)
    return None
  for column in needed:
    if obj.get(column) is None:
      readers.bad_row(where, f"missing column {column!r}",
                      f"missing column {column!r} (columns: {', '.join(map(str, obj))})", **bad)
      return None
  return obj


# ----------------------------------------------------------------------------- splits


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


# ----------------------------------------------------------------------------- report


def _report(c: Collection, fmt: str, raw: _Raw, stats: readers.BadRowStats, data_cfg) -> dict:
  splits = {}
  for split in SPLITS:
    qids = c.split_queries(split)
    relevant = [sum(g > 0 for g in c.qrels[q].values()) for q in qids]
    splits[split] = {
        "queries": len(qids),
        "judgements": sum(len(c.qrels[q]) for q in qids),
        "relevant_per_query": report_lib.length_percentiles(relevant),
        "query_words": report_lib.length_percentiles(len(c.queries[q].split()) for q in qids),
    }
  train_pairs = sum(sum(g >= data_cfg.min_gain for g in c.qrels[q].values())
                    for q in c.split_queries("train"))
  warnings = []
  if stats.total:
    warnings.append(f"skipped {stats.total} bad entries ("
                    + ", ".join(f"{r}: {n}" for r, n in stats.counts.items())
                    + "); examples in the report")
  if train_pairs < data_cfg.min_train_examples:
    warnings.append(
        f"only {train_pairs} training pairs (query, relevant document) from "
        f"{splits['train']['queries']} queries: under {data_cfg.min_train_examples}, fine-tuning "
        "may not beat the pretrained model (hundreds to thousands of judged queries help); "
        "compare dev against zero_shot and BM25 in results.json")
  if splits["dev"]["queries"] < 20:
    warnings.append(f"dev has {splits['dev']['queries']} queries: model selection on so few "
                    "is noisy")
  return {
      "source": data_cfg.path,
      "format": fmt,
      "files": raw.files,
      "documents": {"read": len(raw.docs), "kept": len(c.doc_ids),
                    "words": report_lib.length_percentiles(len(t.split()) for t in c.doc_texts)},
      "queries": {"read": len(raw.queries), "kept": len(c.queries)},
      "judgements": {"read": len(raw.judgements), "kept": sum(len(v) for v in c.qrels.values())},
      "train_pairs": train_pairs,
      "splits": splits,
      "skipped": stats.to_dict(),
      "warnings": warnings,
  }


def format_report(report: dict) -> str:
  d, q, j = report["documents"], report["queries"], report["judgements"]
  lines = [
      f"data {report['source']} ({report['format']})",
      f"  corpus  {d['read']} documents read -> {d['kept']} kept; words p50 {d['words']['p50']},"
      f" p90 {d['words']['p90']}, max {d['words']['max']}",
      f"  queries {q['read']} read -> {q['kept']} kept; judgements {j['read']} read -> "
      f"{j['kept']} kept",
  ]
  for split, s in report["splits"].items():
    r = s["relevant_per_query"]
    lines.append(f"  {split:5s} {s['queries']} queries, {s['judgements']} judgements; relevant "
                 f"per query p50 {r['p50']}, max {r['max']}")
  lines.append(f"  training pairs: {report['train_pairs']}")
  for reason, examples in report["skipped"]["examples"].items():
    lines.append(f"  skipped ({reason}): {report['skipped']['counts'][reason]}, e.g. {examples[0]}")
  lines += [f"warning: {w}" for w in report["warnings"]]
  return "\n".join(lines)
