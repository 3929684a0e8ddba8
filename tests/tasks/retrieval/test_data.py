"""Search data: the Cranfield, BEIR and pairs layouts, the query split, and bad input."""

import json
import os

import pytest

from fjft.data.report import format_report
from fjft.tasks.retrieval import data as ir_data
from fjft.tasks.retrieval.config import default_config as retrieval_config
from fjft.errors import DataError

DOCS = """.I 1
.T
wing flutter at supersonic speed .
.A
smith
.B
j. ae. 1958
.W
wing flutter at supersonic speed .
flutter of thin wings was measured .
.I 2
.T
.A
.B
.W
.I 3
.T
heat transfer in laminar flow .
.A
jones
.B
naca
.W
heat transfer in laminar flow .
.A
a marker line inside the body .
"""
QUERIES = """.I 001
.W
what is wing flutter .
.I 004
.W
how is heat transferred in laminar flow .
.I 007
.W
flutter of thin wings .
"""


def write_cranfield(folder, qrels):
  os.makedirs(folder, exist_ok=True)
  for name, text in (("cran.all.1400", DOCS), ("cran.qry", QUERIES), ("cranqrel", qrels)):
    with open(os.path.join(folder, name), "w", newline="") as f:
      f.write(text.replace("\n", "\r\n"))   # the real files have CRLF line ends
  return str(folder)


def data_cfg(path, **kw):
  c = retrieval_config().data
  c.path = path
  c.dev_fraction = 0.0
  for k, v in kw.items():
    setattr(c, k, v)
  return c


def test_cranfield_parse_renumber_gains_and_split(tmp_path):
  path = write_cranfield(tmp_path / "cran", "1 1 2\n1 3 -1\n2 3 1\n3 1 4\n")
  c = ir_data.load_collection(data_cfg(path, on_bad_row="skip", test_every=3))
  assert c.doc_ids == ["1", "3"]                    # document 2 is empty: skipped, counted
  assert c.doc_texts[0] == ("wing flutter at supersonic speed . wing flutter at supersonic "
                            "speed . flutter of thin wings was measured .")
  assert c.doc_texts[1].endswith("heat transfer in laminar flow . a marker line inside the body .")
  assert list(c.queries) == ["1", "2", "3"]         # file order, not the .I numbers
  assert c.queries["2"] == "how is heat transferred in laminar flow ."
  assert c.qrels == {"1": {"1": 3, "3": 0}, "2": {"3": 4}, "3": {"1": 1}}
  assert c.split_of == {"1": "train", "2": "train", "3": "test"}
  assert c.report["skipped"]["counts"] == {ir_data.EMPTY_DOCUMENT: 1}


def test_bad_entries_stop_with_file_and_line_or_are_counted(tmp_path):
  path = write_cranfield(tmp_path / "cran", "1 1 2\n9 1 2\n1 7 2\n2 3 1\nnonsense\n")
  # the first bad entry met stops the run, naming its file and line
  with pytest.raises(DataError, match=r"cranqrel:5: expected 'query doc code'"):
    ir_data.load_collection(data_cfg(path))
  c = ir_data.load_collection(data_cfg(path, on_bad_row="skip"))
  counts = c.report["skipped"]["counts"]
  assert counts[ir_data.UNKNOWN_QUERY] == 1          # query 9
  assert counts[ir_data.UNKNOWN_DOCUMENT] == 1       # document 7
  assert counts[ir_data.BAD_JUDGEMENT] == 1          # "nonsense"
  assert counts[ir_data.NO_RELEVANT] == 1            # query 3 has no judgement left
  assert "3" not in c.queries
  assert any("skipped" in w for w in c.report["warnings"])


def test_unknown_document_error_names_the_qrels_line(tmp_path):
  path = write_cranfield(tmp_path / "cran", "1 1 2\n1 7 2\n2 3 1\n3 1 1\n")
  with pytest.raises(DataError, match=r"cranqrel:2: judgement names document '7'"):
    ir_data.load_collection(_skip_empty_only(path))


def _skip_empty_only(path):
  # documents error out first in "error" mode; drop the empty one so the qrels are reached
  with open(os.path.join(path, "cran.all.1400"), newline="") as f:
    text = f.read()
  with open(os.path.join(path, "cran.all.1400"), "w", newline="") as f:
    f.write(text.replace(".I 2\r\n.T\r\n.A\r\n.B\r\n.W\r\n", ""))
  return data_cfg(path)


def test_query_without_relevant_documents_is_an_error(tmp_path):
  path = write_cranfield(tmp_path / "cran", "1 1 2\n2 3 -1\n3 1 1\n")
  cfg = _skip_empty_only(path)
  with pytest.raises(DataError, match=r"cran.qry:\d+: query '2' has no relevant document"):
    ir_data.load_collection(cfg)


def test_beir_layout_uses_its_qrels_splits(tmp_path):
  root = tmp_path / "beir"
  (root / "qrels").mkdir(parents=True)
  with open(root / "corpus.jsonl", "w") as f:
    for i, (title, text) in enumerate([("Flutter", "wings shake"), ("", "heat flows"),
                                       ("Shock", "waves form")]):
      f.write(json.dumps({"_id": f"d{i}", "title": title, "text": text}) + "\n")
  with open(root / "queries.jsonl", "w") as f:
    for i, text in enumerate(["shaking wings", "heat", "shock waves"]):
      f.write(json.dumps({"_id": f"q{i}", "text": text}) + "\n")
  (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td1\t2\n")
  (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td2\t1\n")
  c = ir_data.load_collection(data_cfg(str(root), dev_fraction=0.5))
  assert c.doc_texts == ["Flutter wings shake", "heat flows", "Shock waves form"]
  assert c.split_of["q2"] == "test"
  assert sorted(c.split_of[q] for q in ("q0", "q1")) == ["dev", "train"]
  assert c.qrels["q1"] == {"d1": 2}


def test_pairs_file_builds_corpus_and_negatives(tmp_path):
  path = tmp_path / "pairs.jsonl"
  rows = [{"query": "reset password", "positive": "Go to settings to reset it.",
           "negative": "Our shop opens at nine."},
          {"query": "reset password", "positive": "Use the forgot-password link."},
          {"query": "opening hours", "positive": "Our shop opens at nine."},
          {"query": "refund", "positive": "Refunds take five days.",
           "negative": ["Go to settings to reset it."]}]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  c = ir_data.load_collection(data_cfg(str(path), test_fraction=0.0))
  assert len(c.doc_ids) == 4                        # shared texts are one document
  assert len(c.queries) == 3
  q_reset = next(q for q, t in c.queries.items() if t == "reset password")
  assert len(c.qrels[q_reset]) == 2
  shop = c.doc_ids[c.doc_texts.index("Our shop opens at nine.")]
  assert c.negatives[q_reset] == [shop]
  assert any("training pairs" in w for w in c.report["warnings"])   # far under 500


def test_hashed_split_is_deterministic_and_holds_out_test(tmp_path):
  path = tmp_path / "pairs.csv"
  path.write_text("query,positive\n" + "".join(f"question {i},answer {i}\n" for i in range(50)))
  a = ir_data.load_collection(data_cfg(str(path), test_fraction=0.2, dev_fraction=0.25))
  b = ir_data.load_collection(data_cfg(str(path), test_fraction=0.2, dev_fraction=0.25))
  assert a.split_of == b.split_of
  sizes = {s: len(a.split_queries(s)) for s in ("train", "dev", "test")}
  assert sizes == {"train": 30, "dev": 10, "test": 10}


def test_missing_column_names_file_and_line(tmp_path):
  path = tmp_path / "pairs.jsonl"
  path.write_text(json.dumps({"query": "a", "positive": "b"}) + "\n" +
                  json.dumps({"query": "c"}) + "\n")
  with pytest.raises(DataError, match=r"pairs.jsonl:2: missing column 'positive'"):
    ir_data.load_collection(data_cfg(str(path)))


def test_real_cranfield_matches_the_data_readme(shared_data):
  cfg = data_cfg(os.path.join(shared_data, "cranfield"), on_bad_row="skip", test_every=3,
                 dev_fraction=0.2)
  c = ir_data.load_collection(cfg)
  assert len(c.queries) == 225 and len(c.doc_ids) == 1398   # 471 and 995 have no text
  assert len(c.split_queries("test")) == 75
  assert all(int(q) % 3 == 0 for q in c.split_queries("test"))
  assert len(c.split_queries("dev")) == 30
  # cranqrel numbers queries by position: query 1 is the first of cran.qry
  assert c.queries["1"].startswith("what similarity laws must be obeyed")
  assert c.qrels["1"]["184"] == 3                             # code 2 -> gain 3


def _beir(root, queries, qrels):
  (root / "qrels").mkdir(parents=True)
  with open(root / "corpus.jsonl", "w") as f:
    for i in range(4):
      f.write(json.dumps({"_id": f"d{i}", "text": f"document {i}"}) + "\n")
  with open(root / "queries.jsonl", "w") as f:
    for qid, text in queries.items():
      f.write(json.dumps({"_id": qid, "text": text}) + "\n")
  for split, rows in qrels.items():
    (root / "qrels" / f"{split}.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in rows))
  return str(root)


def test_repeated_and_overlapping_query_texts_are_dropped_and_counted(tmp_path):
  queries = {"q0": "wing flutter", "q1": "wing  flutter", "q2": "heat flow", "q3": "shock",
             "q4": "heat flow", "q5": "lift"}
  qrels = {"train": [("q0", "d0"), ("q1", "d1"), ("q2", "d2"), ("q5", "d3")],
           "dev": [("q3", "d3")], "test": [("q4", "d2")]}
  path = _beir(tmp_path / "beir", queries, qrels)
  c = ir_data.load_collection(data_cfg(path))
  assert c.split_queries("train") == ["q0", "q5"] and c.split_queries("test") == ["q4"]
  assert c.qrels["q0"] == {"d0": 1, "d1": 1}      # the repeat's judgements join the first's
  assert "q1" not in c.qrels and "q2" not in c.split_of
  train = c.report["splits"]["train"]
  assert train["dropped"] == {"duplicates": 1, "overlap with dev/test": 1}
  assert (train["rows_read"], train["examples"], train["queries"]) == (4, 2, 2)
  assert train["drop_examples"]["overlap with dev/test"][0].endswith(
      "queries.jsonl:3: same query as " + os.path.join(path, "queries.jsonl") + ":5")
  assert c.report["duplicates_removed"] == 1 and c.report["overlap_removed"] == 1
  assert c.report["queries"] == {"read": 6, "kept": 4}
  assert c.report["splits"]["test"]["source"] == os.path.join(path, "qrels", "test.tsv")
  assert "overlap with dev/test 1" in format_report(c.report)
  kept = ir_data.load_collection(data_cfg(path, drop_duplicates=False))
  assert kept.split_queries("train") == ["q0", "q1", "q2", "q5"]
  assert kept.report["duplicates_removed"] == kept.report["overlap_removed"] == 0


def test_pairs_folder_query_in_train_and_test_files(tmp_path):
  write = lambda name, rows: (tmp_path / name).write_text(
      "".join(json.dumps({"query": q, "positive": p}) + "\n" for q, p in rows))
  write("train.jsonl", [("reset password", "Use the link."), ("refund", "Five days."),
                        ("opening hours", "At nine.")])
  write("test.jsonl", [("refund", "Refunds take five days.")])
  c = ir_data.load_collection(data_cfg(str(tmp_path)))
  assert sorted(c.queries[q] for q in c.split_queries("train")) == ["opening hours",
                                                                   "reset password"]
  assert [c.queries[q] for q in c.split_queries("test")] == ["refund"]
  assert c.report["splits"]["train"]["overlap_removed"] == 1
  with pytest.raises(DataError, match=r"test.jsonl:1: query 'refund' is also in the train file"):
    ir_data.load_collection(data_cfg(str(tmp_path), drop_duplicates=False))


def test_report_is_the_shared_schema(tmp_path):
  path = write_cranfield(tmp_path / "cran", "1 1 2\n2 3 1\n3 1 4\n")
  report = ir_data.load_collection(data_cfg(path, on_bad_row="skip", test_every=3)).report
  assert report["task"] == "retrieval"
  for key in ("splits", "lengths", "skipped", "bad_rows", "duplicates_removed",
              "overlap_removed", "warnings", "documents", "train_pairs"):
    assert key in report, key
  assert report["bad_rows"] == 1 and report["splits"]["train"]["bad_rows"] == 0
  assert report["lengths"]["test"]["unit"] == "query words"
  text = format_report(report)
  assert "skipped before splitting: empty document 1" in text
  assert "test  1 read -> 1 kept  [the queries numbered 3, 6, ... (data.test_every)]" in text
