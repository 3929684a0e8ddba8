"""The files of a search data set (data.format, or "auto" to tell them apart by their files).

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
             every distinct query a query whose positives are relevant (gain 1). In a folder
             a query belongs to one file; with data.drop_duplicates (the default) a query
             text in two files is two queries, and fjft.tasks.retrieval.data drops the
             earlier split's one (train before dev before test) as overlap.

read() returns what the files hold (Raw), uncleaned; bad lines raise DataError naming file
and line, or with data.on_bad_row="skip" are counted.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re

from fjft.data import readers
from fjft.data.clean import normalize_text
from fjft.data.splits import split_files
from fjft.errors import DataError

FORMATS = ("auto", "cranfield", "beir", "pairs")
CRANFIELD_FILES = ("cran.all.1400", "cran.qry", "cranqrel")
BEIR_FILES = ("corpus.jsonl", "queries.jsonl")
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
class Raw:
  """What a reader found, before splitting: texts uncleaned, ids as in the files."""

  docs: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)     # id, text, where
  queries: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)  # id, text, where
  judgements: list[tuple[str, str, int, str]] = dataclasses.field(default_factory=list)
  split_of: dict[str, str] = dataclasses.field(default_factory=dict)
  negatives: dict[str, list[str]] = dataclasses.field(default_factory=dict)
  files: list[str] = dataclasses.field(default_factory=list)
  split_files: dict[str, str] = dataclasses.field(default_factory=dict)  # split -> its file


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


def read(fmt: str, path: str, data_cfg, bad: dict) -> Raw:
  """The files of `path` in layout `fmt` (not "auto"); `bad`: on_bad_row and stats."""
  reader = {"cranfield": _read_cranfield, "beir": _read_beir, "pairs": _read_pairs}[fmt]
  return reader(path, data_cfg, bad)


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


def _read_cranfield(path: str, data_cfg, bad) -> Raw:
  del data_cfg
  raw = Raw(files=[os.path.join(path, n) for n in CRANFIELD_FILES])
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


def _read_beir(path: str, data_cfg, bad) -> Raw:
  del data_cfg
  raw = Raw()
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
    raw.split_files[split] = qrels_file
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


def _read_pairs(path: str, data_cfg, bad) -> Raw:
  files = split_files(path) if os.path.isdir(path) else {"train": path}
  raw = Raw(files=list(files.values()))
  columns = {data_cfg.query_column: "query_column", data_cfg.positive_column: "positive_column"}
  neg = data_cfg.negative_column
  doc_id_of: dict[str, str] = {}
  query_id_of: dict[tuple[str, str], str] = {}
  # a query text in two files: two queries (the overlap is dropped later), else an error
  by_split = len(files) > 1 and getattr(data_cfg, "drop_duplicates", False)

  def doc(text: str, where: str) -> str:
    text = normalize_text(text)
    if text not in doc_id_of:
      doc_id_of[text] = f"d{len(doc_id_of) + 1}"
      raw.docs.append((doc_id_of[text], text, where))
    return doc_id_of[text]

  for split, file in files.items():
    if len(files) > 1:
      raw.split_files[split] = file
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
      key = (split if by_split else "", query)
      if key not in query_id_of:
        query_id_of[key] = f"q{len(query_id_of) + 1}"
        raw.queries.append((query_id_of[key], query, where))
      qid = query_id_of[key]
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
