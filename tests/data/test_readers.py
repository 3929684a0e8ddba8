"""fjft.data.readers: every format, line numbers, and each kind of bad row."""

import os
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fjft.data.readers import BadRowStats, Row, read_rows
from fjft.errors import ConfigError, DataError


def _write(tmp_path, name, content):
  path = tmp_path / name
  if isinstance(content, str):
    content = content.encode("utf-8")
  path.write_bytes(content)
  return str(path)


def _read(path, on_bad_row="error", label_column="label", text_column="text", stats=None):
  return read_rows(path, text_column=text_column, label_column=label_column,
                   on_bad_row=on_bad_row, stats=stats if stats is not None else BadRowStats())


@pytest.mark.parametrize("ext", ["jsonl", "json"])
def test_jsonl_rows_labels_and_line_numbers(tmp_path, ext):
  path = _write(tmp_path, f"train.{ext}",
                '{"text": "good film", "label": "pos"}\n'
                "\n"  # blank lines are skipped but still counted as lines
                '{"text": "bad film", "label": 0, "extra": [1]}\r\n'
                '{"text": "so so", "label": true}\n')
  assert _read(path) == [Row("good film", "pos", f"{path}:1"), Row("bad film", "0", f"{path}:3"),
                         Row("so so", "True", f"{path}:4")]


def test_label_column_none_gives_no_labels(tmp_path):
  path = _write(tmp_path, "x.jsonl", '{"text": "a"}\n')
  assert _read(path, label_column=None) == [Row("a", None, f"{path}:1")]


def test_csv_multiline_quoted_cells_keep_record_start_lines(tmp_path):
  path = _write(tmp_path, "train.csv",
                "text,label\n"
                '"first line\nsecond line, with comma",a\n'
                "plain,b\n"
                '"he said ""hi""\r\n\r\nand left",c\n'
                "last,d\n")
  rows = _read(path)
  assert [(r.text, r.label, r.where) for r in rows] == [
      ("first line\nsecond line, with comma", "a", f"{path}:2"),
      ("plain", "b", f"{path}:4"),
      ('he said "hi"\r\n\r\nand left', "c", f"{path}:5"),
      ("last", "d", f"{path}:8"),
  ]


def test_tsv_with_bom_header_spaces_and_quotes(tmp_path):
  path = _write(tmp_path, "dev.tsv",
                b"\xef\xbb\xbfsentence\t label\n"
                b"it 's fine . \t1\n"
                b'"tab\tinside"\t0\n')
  rows = _read(path, text_column="sentence")
  assert rows == [Row("it 's fine . ", "1", f"{path}:2"), Row("tab\tinside", "0", f"{path}:3")]


def test_parquet_rows_and_row_numbers(tmp_path):
  path = str(tmp_path / "train.parquet")
  pq.write_table(pa.table({"text": ["a", None, "c"], "label": [1, 0, 1], "id": [7, 8, 9]}), path)
  stats = BadRowStats()
  rows = _read(path, on_bad_row="skip", stats=stats)
  assert rows == [Row("a", "1", f"{path}:row 1"), Row("c", "1", f"{path}:row 3")]
  assert stats.counts == {"text is not a string": 1}
  with pytest.raises(DataError, match=re.escape(f"{path}:row 2: text column 'text' is not a")):
    _read(path)


def test_parquet_without_text_column_lists_columns(tmp_path):
  path = str(tmp_path / "train.parquet")
  pq.write_table(pa.table({"sentence": ["a"], "label": [1]}), path)
  with pytest.raises(DataError, match=r"no column 'text' \(columns found: sentence, label\)"):
    _read(path)


def test_corrupt_parquet_is_a_data_error(tmp_path):
  path = _write(tmp_path, "train.parquet", b"not parquet at all")
  with pytest.raises(DataError, match="not a readable parquet file"):
    _read(path)


# (file name, content, line of the bad row, reason key, message pattern). Each file has
# one good row before and after the bad one.
_BAD_ROWS = [
    ("t.jsonl", '{"text": "a" "label": 1}', "invalid JSON",
     r"invalid JSON \(Expecting ',' delimiter\)"),
    ("t.jsonl", "[1, 2]", "not a JSON object", r"not a JSON object \(got array\)"),
    ("t.jsonl", '{"text": "x", "category": "a"}', "missing column 'label'",
     r"missing column 'label' \(columns: text, category\)"),
    ("t.jsonl", '{"label": "a"}', "missing column 'text'", r"missing column 'text'"),
    ("t.jsonl", '{"text": 5, "label": "a"}', "text is not a string",
     r"text column 'text' is not a string \(got number\)"),
    ("t.jsonl", '{"text": "x", "label": null}', "label is null", r"label column 'label' is null"),
    ("t.jsonl", '{"text": "x", "label": 1.5}', "label has an unsupported type",
     r"label column 'label' must be a string, integer or boolean \(got number 1.5\)"),
    ("t.jsonl", b'{"text": "caf\xe9", "label": "a"}', "undecodable bytes",
     r"undecodable bytes \(not valid UTF-8"),
    ("t.csv", "a,b,c", "wrong number of fields", r"wrong number of fields \(expected 2, got 3\)"),
    ("t.csv", b"caf\xc3,a", "undecodable bytes", r"undecodable bytes"),
    ("t.tsv", "only one field", "wrong number of fields",
     r"wrong number of fields \(expected 2, got 1\)"),
]


def _file_with_bad_row(tmp_path, name, bad):
  if name.endswith(".jsonl"):
    head, good = b"", b'{"text": "fine", "label": "a"}\n'
  else:
    sep = b"\t" if name.endswith(".tsv") else b","
    head, good = b"text" + sep + b"label\n", b"fine" + sep + b"a\n"
  bad = bad if isinstance(bad, bytes) else bad.encode("utf-8")
  path = _write(tmp_path, name, head + good + bad + b"\n" + good)
  return path, 2 + bool(head)


@pytest.mark.parametrize("name,bad,reason,message", _BAD_ROWS)
def test_bad_row_error_names_file_line_and_reason(tmp_path, name, bad, reason, message):
  path, line = _file_with_bad_row(tmp_path, name, bad)
  with pytest.raises(DataError, match=f"^{re.escape(path)}:{line}: {message}") as e:
    _read(path)
  assert "on_bad_row='skip'" in str(e.value)


@pytest.mark.parametrize("name,bad,reason,message", _BAD_ROWS)
def test_bad_row_skip_counts_reason_and_keeps_good_rows(tmp_path, name, bad, reason, message):
  path, line = _file_with_bad_row(tmp_path, name, bad)
  stats = BadRowStats()
  rows = _read(path, on_bad_row="skip", stats=stats)
  assert [r.text for r in rows] == ["fine", "fine"]
  assert stats.counts == {reason: 1}
  assert re.match(f"{re.escape(path)}:{line}: {message}", stats.examples[reason][0])


def test_undecodable_bytes_inside_a_multiline_csv_record(tmp_path):
  path = _write(tmp_path, "t.csv", b'text,label\n"one\ntw\xffo",a\nok,b\n')
  stats = BadRowStats()
  assert _read(path, on_bad_row="skip", stats=stats) == [Row("ok", "b", f"{path}:4")]
  assert stats.examples["undecodable bytes"][0].startswith(f"{path}:2: undecodable bytes")


def test_unclosed_quote_is_reported_at_its_start(tmp_path):
  path = _write(tmp_path, "t.csv", 'text,label\nok,a\n"oops,b\nmore,c\nrest,d\n')
  with pytest.raises(DataError, match=r"t.csv:3: wrong number of fields .*lines 3-5: an unclosed"):
    _read(path)


def test_stats_keep_five_examples_per_reason_but_count_all(tmp_path):
  path = _write(tmp_path, "t.jsonl", "not json\n" * 8 + '{"text": "a", "label": 1}\n')
  stats = BadRowStats()
  assert len(_read(path, on_bad_row="skip", stats=stats)) == 1
  assert stats.counts == {"invalid JSON": 8} and stats.total == 8
  assert len(stats.examples["invalid JSON"]) == 5
  assert stats.to_dict()["counts"] == {"invalid JSON": 8}


def test_header_without_text_column_lists_columns(tmp_path):
  path = _write(tmp_path, "t.tsv", "sentence\tlabel\nhi\t1\n")
  with pytest.raises(DataError, match=r"t.tsv:1: no column 'text' \(columns found: sentence, "
                     r"label\); set data.text_column"):
    _read(path)


def test_header_without_label_column(tmp_path):
  path = _write(tmp_path, "t.csv", "text,category\nhi,a\n")
  with pytest.raises(DataError, match=r"no column 'label' \(columns found: text, category\)"):
    _read(path)


def test_missing_file_and_unknown_extension(tmp_path):
  with pytest.raises(DataError, match=r"nope.jsonl: no such file \(supported formats: jsonl"):
    _read(str(tmp_path / "nope.jsonl"))
  path = _write(tmp_path, "train.txt", "hello\n")
  with pytest.raises(DataError, match=r"train.txt: unsupported file type '.txt'; supported "
                     r"formats: jsonl, json .*csv, tsv, parquet"):
    _read(path)


def test_empty_csv_and_json_array_are_data_errors(tmp_path):
  with pytest.raises(DataError, match="the file is empty"):
    _read(_write(tmp_path, "e.csv", ""))
  with pytest.raises(DataError, match=r"a.json:1: .*JSON array.*one JSON object per line"):
    _read(_write(tmp_path, "a.json", '[{"text": "a", "label": 1}]\n'))


def test_unknown_on_bad_row_is_a_config_error(tmp_path):
  path = _write(tmp_path, "t.jsonl", '{"text": "a", "label": 1}\n')
  with pytest.raises(ConfigError, match="data.on_bad_row"):
    _read(path, on_bad_row="ignore")


@pytest.mark.parametrize("name, content", [
    ("train.jsonl", '{"text": "good film", "label": "pos"}\n{"text": "¿qué?", "label": "neg"}\n'),
    ("train.csv", 'text,label\n"good\nfilm",pos\n¿qué?,neg\n'),
    ("train.tsv", "text\tlabel\ngood film\tpos\n¿qué?\tneg\n"),
])
def test_gzipped_files_read_as_the_plain_ones(tmp_path, name, content):
  import gzip
  plain = _write(tmp_path, name, content)
  packed = str(tmp_path / (name + ".gz"))
  with gzip.open(packed, "wb") as f:
    f.write(content.encode())
  rows = _read(packed)
  assert [(r.text, r.label) for r in rows] == [(r.text, r.label) for r in _read(plain)]
  assert rows[-1].where.startswith(f"{packed}:")


def test_gzipped_parquet_and_a_folder_of_gzipped_splits(tmp_path):
  import gzip
  from fjft.data.splits import split_files
  pq.write_table(pa.table({"text": ["a", "b"], "label": ["x", "y"]}), tmp_path / "p.parquet")
  with gzip.open(tmp_path / "train.parquet.gz", "wb") as f:
    f.write((tmp_path / "p.parquet").read_bytes())
  assert [r.text for r in _read(str(tmp_path / "train.parquet.gz"))] == ["a", "b"]
  (tmp_path / "p.parquet").unlink()
  with gzip.open(tmp_path / "test.jsonl.gz", "wb") as f:
    f.write(b'{"text": "c", "label": "x"}\n')
  assert split_files(str(tmp_path)) == {"train": str(tmp_path / "train.parquet.gz"),
                                        "test": str(tmp_path / "test.jsonl.gz")}


def test_a_broken_gzip_file_is_a_data_error_naming_it(tmp_path):
  import gzip
  not_gzip = _write(tmp_path, "train.jsonl.gz", '{"text": "a", "label": "x"}\n')
  with pytest.raises(DataError, match=rf"^{re.escape(not_gzip)}: not a readable gzip file"):
    _read(not_gzip)
  whole = gzip.compress(b'{"text": "a", "label": "x"}\n' * 2000)
  cut = _write(tmp_path, "cut.jsonl.gz", whole[:len(whole) // 2])
  with pytest.raises(DataError, match=rf"^{re.escape(cut)}: not a readable gzip file"):
    _read(cut)


def test_the_shared_preference_pairs_read_gzipped(shared_data):
  from fjft.data.readers import read_table
  path = os.path.join(shared_data, "hh_rlhf_harmless", "harmless-base-test.jsonl.gz")
  rows = list(read_table(path, {}, on_bad_row="error", stats=BadRowStats()))
  assert len(rows) == 2312
  assert rows[0][0] == f"{path}:1" and {"chosen", "rejected"} <= set(rows[0][1])
