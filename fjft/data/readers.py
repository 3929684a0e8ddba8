"""Reads text/label rows from jsonl, csv, tsv, parquet files and Hugging Face datasets.

Any of these files (and .txt) may be gzipped: `train.jsonl.gz` is read as `train.jsonl`.

Every row carries where it came from ("path:line"), so a bad row can be reported by file
and line, or skipped and counted, as `on_bad_row` says. Bytes are decoded one line at a
time (not the whole file at once) so that an undecodable byte is pinned to its line.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import os
import zlib
from typing import Any, Iterable, Iterator, Mapping, Sequence

from fjft.errors import ConfigError, DataError

SUPPORTED_EXTENSIONS = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
ON_BAD_ROW_CHOICES = ("error", "skip")
_SUPPORTED = "jsonl, json (one JSON object per line), csv, tsv, parquet, each optionally gzipped (.gz)"
GZIP = ".gz"
MAX_EXAMPLES_PER_REASON = 5
_SKIP_HINT = "; set data.on_bad_row='skip' to skip and count such rows"
# What a command's own input file (predict, embed, search --input) says instead: those
# commands have no data.on_bad_row to set.
INPUT_FILE_HINT = "; fix or remove that row of the input file"


@dataclasses.dataclass(frozen=True)
class Row:
  """One row as read, before any cleaning."""

  text: str  # raw text as read
  label: str | None  # as a string (json ints/bools via str()); None when not asked for
  where: str  # "path:line" (1-based line where the row starts) or "path:row N" (1-based)


class BadRowStats:
  """Counts skipped rows per reason and keeps the first few examples of each; `skip_hint`
  ends the error a bad row raises under on_bad_row="error"."""

  def __init__(self, skip_hint: str = _SKIP_HINT):
    self.skip_hint = skip_hint
    self.counts: dict[str, int] = {}
    self.examples: dict[str, list[str]] = {}

  def add(self, where: str, reason: str, message: str | None = None) -> None:
    """Counts one row under `reason`; `message` (default: reason) is what the example shows."""
    self.counts[reason] = self.counts.get(reason, 0) + 1
    examples = self.examples.setdefault(reason, [])
    if len(examples) < MAX_EXAMPLES_PER_REASON:
      examples.append(f"{where}: {message or reason}")

  @property
  def total(self) -> int:
    return sum(self.counts.values())

  def to_dict(self) -> dict:
    return {"counts": dict(self.counts), "examples": {k: list(v) for k, v in self.examples.items()}}


def check_on_bad_row(on_bad_row: Any) -> None:
  if on_bad_row not in ON_BAD_ROW_CHOICES:
    raise ConfigError(f"data.on_bad_row must be 'error' or 'skip', got {on_bad_row!r}")


def bad_row(where: str, reason: str, message: str | None = None, *, on_bad_row: str,
            stats: BadRowStats) -> None:
  """Raises DataError("where: message") when on_bad_row is "error", else counts the row."""
  if on_bad_row == "error":
    raise DataError(f"{where}: {message or reason}{stats.skip_hint}")
  stats.add(where, reason, message)


def read_rows(path: str, *, text_column: str, label_column: str | None, on_bad_row: str,
              stats: BadRowStats) -> list[Row]:
  """Reads all good rows of one file; the format comes from the extension.

  Bad rows raise DataError naming "path:line: reason" or, with on_bad_row="skip", are
  counted in `stats`. A missing file, an unknown extension, or a header without the
  asked-for columns is always a DataError.
  """
  columns = {text_column: "text_column"}
  if label_column is not None:
    columns[label_column] = "label_column"
  rows = []
  for where, obj in read_table(path, columns, on_bad_row=on_bad_row, stats=stats):
    row = _row_from_object(obj, where, text_column, label_column, on_bad_row, stats)
    if row is not None:
      rows.append(row)
  return rows


def read_table(path: str, columns: Mapping[str, str], *, on_bad_row: str,
               stats: BadRowStats, optional: Sequence[str] = ()) -> Iterator[tuple[str, Any]]:
  """(where, record) for each row of one file that parses: a dict for csv, tsv and parquet
  rows, whatever JSON value a jsonl line holds (callers check it).

  `columns` maps each column the caller needs to the config field that names it (for the
  message when a header lacks it); parquet reads only those and the `optional` columns it
  has. Rows that do not parse
  (invalid JSON, wrong field count, undecodable bytes) go to bad_row().
  """
  check_on_bad_row(on_bad_row)
  ext = file_ext(path)
  if ext not in SUPPORTED_EXTENSIONS:
    raise DataError(f"{path}: unsupported file type {ext or '(no extension)'!r}; "
                    f"supported formats: {_SUPPORTED}")
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such file (supported formats: {_SUPPORTED})")
  args = dict(columns=columns, on_bad_row=on_bad_row, stats=stats)
  if ext in (".jsonl", ".json"):
    return _read_jsonl(path, on_bad_row=on_bad_row, stats=stats)
  if ext == ".parquet":
    return _read_parquet(path, optional=optional, **args)
  return _read_delimited(path, delimiter="\t" if ext == ".tsv" else ",", **args)


def read_records(records: Iterable[Mapping[str, Any]], source: str, *, text_column: str,
                 label_column: str | None, on_bad_row: str, stats: BadRowStats,
                 label_names: Sequence[str] | None = None) -> list[Row]:
  """Rows from in-memory records (e.g. a Hugging Face split); where = "source:row N".

  `label_names` maps integer labels to names (a ClassLabel feature); -1 stays "-1".
  """
  check_on_bad_row(on_bad_row)
  rows = []
  for i, record in enumerate(records, 1):
    row = _row_from_object(record, f"{source}:row {i}", text_column, label_column,
                           on_bad_row, stats)
    if row is not None and label_names and row.label is not None:
      index = int(row.label) if row.label.lstrip("-").isdigit() else None
      if index is not None and 0 <= index < len(label_names):
        row = dataclasses.replace(row, label=str(label_names[index]))
    if row is not None:
      rows.append(row)
  return rows


def load_hf_dataset(name: str) -> dict[str, Any]:
  """Loads `owner/name[:config]` with datasets.load_dataset; {split name: split}."""
  data_path = f"data.path: {name!r} is not a local file or folder"
  local_hint = ("Give a local path instead: a file, or a folder holding train.<ext> "
                f"(and optionally dev.<ext>, test.<ext>), ext one of {_SUPPORTED}.")
  try:
    import datasets  # pylint: disable=g-import-not-at-top  # optional, heavy
  except ImportError:
    raise DataError(f"{data_path}; it looks like a Hugging Face dataset name, but the "
                    f"`datasets` package is not installed (pip install datasets). "
                    f"{local_hint}") from None
  dataset, _, config = name.partition(":")
  try:
    loaded = datasets.load_dataset(dataset, config or None)
    return {split: loaded[split] for split in loaded}
  except Exception as e:  # pylint: disable=broad-except  # any failure means: not loadable
    raise DataError(f"{data_path}, and loading it as a Hugging Face dataset failed "
                    f"({type(e).__name__}: {e}). {local_hint}") from None


def _json_type(value: Any) -> str:
  if value is None:
    return "null"
  if isinstance(value, bool):
    return "boolean"
  if isinstance(value, (int, float)):
    return "number"
  return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _row_from_object(obj: Any, where: str, text_column: str, label_column: str | None,
                     on_bad_row: str, stats: BadRowStats) -> Row | None:
  """Validates one JSON object / record; returns None for a bad row (after bad_row())."""
  bad = dict(on_bad_row=on_bad_row, stats=stats)
  if not isinstance(obj, Mapping):
    bad_row(where, "not a JSON object", f"not a JSON object (got {_json_type(obj)})", **bad)
    return None
  for column in (text_column, label_column):
    if column is not None and column not in obj:
      bad_row(where, f"missing column {column!r}",
              f"missing column {column!r} (columns: {', '.join(map(str, obj))})", **bad)
      return None
  text = obj[text_column]
  if not isinstance(text, str):
    bad_row(where, "text is not a string",
            f"text column {text_column!r} is not a string (got {_json_type(text)})", **bad)
    return None
  label = None
  if label_column is not None:
    value = obj[label_column]
    if value is None:
      bad_row(where, "label is null", f"label column {label_column!r} is null", **bad)
      return None
    if not isinstance(value, (str, int)):  # bool is an int
      bad_row(where, "label has an unsupported type",
              f"label column {label_column!r} must be a string, integer or boolean "
              f"(got {_json_type(value)} {value!r})", **bad)
      return None
    label = str(value)
  return Row(text=text, label=label, where=where)


def _split_name(path: str) -> tuple[str, str]:
  # (stem, format extension) of the file name, a gzip suffix left out
  name = os.path.basename(path)
  if name.lower().endswith(GZIP):
    name = name[:-len(GZIP)]
  return os.path.splitext(name)


def file_ext(path: str) -> str:
  """A data file's format, lower-case, past a gzip suffix: "train.jsonl.gz" -> ".jsonl"."""
  return _split_name(path)[1].lower()


def file_stem(path: str) -> str:
  """The name without its format (and gzip) suffix: "train.jsonl.gz" -> "train"."""
  return _split_name(path)[0]


def _raw_lines(path: str) -> Iterator[bytes]:
  """The file's lines as bytes, gunzipped when the name ends in .gz."""
  if not path.lower().endswith(GZIP):
    with open(path, "rb") as f:
      yield from f
    return
  try:
    with gzip.open(path, "rb") as f:
      yield from f
  except (OSError, EOFError, zlib.error) as e:   # not gzip, or cut short
    raise DataError(f"{path}: not a readable gzip file ({type(e).__name__}: {e})") from None


def decoded_lines(path: str, bad_lines: dict[int, str]) -> Iterator[tuple[int, str]]:
  """(1-based line number, text incl. line end) per physical line, decoded one at a time.

  Undecodable lines are yielded with U+FFFD replacements (so a CSV parser can go on) and
  `bad_lines[number]` says what is wrong. A UTF-8 byte order mark is dropped.
  """
  number = 0
  for raw in _raw_lines(path):
    if number == 0 and raw.startswith(b"\xef\xbb\xbf"):
      raw = raw[3:]
    # splitlines: a lone "\r" also ends a line, as it does in editors and the csv module.
    for part in raw.splitlines(keepends=True):
      number += 1
      try:
        yield number, part.decode("utf-8")
      except UnicodeDecodeError as e:
        bad_lines[number] = (f"undecodable bytes (not valid UTF-8: {e.reason} at byte "
                             f"{e.start + 1} of the line)")
        yield number, part.decode("utf-8", errors="replace")


def _read_jsonl(path, *, on_bad_row, stats) -> Iterator[tuple[str, Any]]:
  bad_lines: dict[int, str] = {}
  seen_content = False
  for number, line in decoded_lines(path, bad_lines):
    if not line.strip():
      continue
    where = f"{path}:{number}"
    if not seen_content and line.lstrip().startswith("["):
      raise DataError(f"{where}: the file starts with '[' (a JSON array?); .json and .jsonl "
                      "files must hold one JSON object per line (JSON Lines)")
    seen_content = True
    if number in bad_lines:
      bad_row(where, "undecodable bytes", bad_lines[number], on_bad_row=on_bad_row,
              stats=stats)
      continue
    try:
      obj = json.loads(line)
    except json.JSONDecodeError as e:
      bad_row(where, "invalid JSON", f"invalid JSON ({e.msg})", on_bad_row=on_bad_row,
              stats=stats)
      continue
    yield where, obj


def _check_columns(where: str, found: Sequence[str], columns: Mapping[str, str]) -> None:
  for column, field in columns.items():
    if column not in found:
      raise DataError(f"{where}: no column {column!r} (columns found: {', '.join(found)}); "
                      f"set data.{field} to one of them")


def _read_delimited(path, *, delimiter, columns, on_bad_row, stats) -> Iterator[tuple[str, Any]]:
  bad_lines: dict[int, str] = {}
  lines = (line for _, line in decoded_lines(path, bad_lines))
  # reader.line_num counts the physical lines consumed, so a record's first line is known.
  reader = csv.reader(lines, delimiter=delimiter)
  header = None
  while True:
    start = reader.line_num + 1
    try:
      record = next(reader)
    except StopIteration:
      break
    except csv.Error as e:
      # The parser's state is lost (e.g. an unclosed quote ran into a huge field): stop.
      raise DataError(f"{path}:{start}: cannot parse the record starting here ({e}); "
                      "an unclosed quote?") from None
    end = reader.line_num
    if not record:  # blank line
      continue
    where = f"{path}:{start}"
    undecodable = next((bad_lines[n] for n in range(start, end + 1) if n in bad_lines), None)
    if header is None:
      if undecodable:
        raise DataError(f"{where}: {undecodable} in the header")
      header = [c.strip() for c in record]
      _check_columns(where, header, columns)
      continue
    if undecodable:
      bad_row(where, "undecodable bytes", undecodable, on_bad_row=on_bad_row, stats=stats)
      continue
    if len(record) != len(header):
      spans = f"; the record spans lines {start}-{end}: an unclosed quote?" if end > start else ""
      bad_row(where, "wrong number of fields",
              f"wrong number of fields (expected {len(header)}, got {len(record)}{spans})",
              on_bad_row=on_bad_row, stats=stats)
      continue
    yield where, dict(zip(header, record))
  if header is None:
    raise DataError(f"{path}: the file is empty (expected a header line naming the columns)")


def _read_parquet(path, *, columns, optional, on_bad_row, stats) -> Iterator[tuple[str, Any]]:
  del on_bad_row, stats  # a parquet file parses whole or not at all
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top  # only for parquet

  try:
    # parquet compresses itself; a gzipped one is unpacked in memory (it needs seeking)
    source = (io.BytesIO(gzip.open(path, "rb").read()) if path.lower().endswith(GZIP)
              else path)
    names = pq.read_schema(source).names
    _check_columns(path, names, columns)
    wanted = list(columns) + [c for c in optional if c in names and c not in columns]
    table = pq.read_table(source, columns=wanted)
  except DataError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # pyarrow raises many kinds
    raise DataError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})") from None
  values = {c: table.column(c).to_pylist() for c in wanted}
  for i in range(table.num_rows):
    yield f"{path}:row {i + 1}", {c: values[c][i] for c in wanted}
