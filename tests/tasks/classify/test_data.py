"""fjft.tasks.classify.data.load_classification_splits and the data report."""

import collections
import json
import pathlib
import sys
import types

import ml_collections
import pytest

from fjft.data.report import format_report
from fjft.errors import ConfigError, DataError
from fjft.tasks.classify.data import load_classification_splits

SHARED_DATA = pathlib.Path(__file__).parents[4] / "shared" / "data"


def _cfg(path, **overrides):
  values = dict(path=str(path), text_column="text", label_column="label", on_bad_row="error",
                dev_fraction=0.1, split_seed=0, lowercase=False, dedup=True, min_train_examples=5)
  return ml_collections.ConfigDict({**values, **overrides})


def _jsonl(path, rows):
  """rows: (text, label) pairs or raw lines (str)."""
  lines = [r if isinstance(r, str) else json.dumps({"text": r[0], "label": r[1]}) for r in rows]
  path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
  return path


def _folder(tmp_path, train, dev=None, test=None, ext="jsonl"):
  for name, rows in (("train", train), ("dev", dev), ("test", test)):
    if rows is not None:
      _jsonl(tmp_path / f"{name}.{ext}", rows)
  return tmp_path


def _train_rows(n, labels=("neg", "pos")):
  return [(f"example number {i}", labels[i % len(labels)]) for i in range(n)]


def _check_accounting(report):
  """Every row read is kept, dropped for a counted reason, or moved to dev."""
  for split in report["splits"].values():
    moved = split.get("moved_to_dev", 0)
    assert split["rows_read"] == split["rows_kept"] + sum(split["dropped"].values()) + moved


def test_folder_with_three_splits(tmp_path):
  folder = _folder(tmp_path, train=_train_rows(20), dev=[("dev one", "pos"), ("dev two", "neg")],
                   test=[("test one", "neg")])
  splits = load_classification_splits(_cfg(folder))
  assert (len(splits.train), len(splits.dev), len(splits.test)) == (20, 2, 1)
  assert splits.labels == ["neg", "pos"]
  assert splits.dev[0].where == f"{folder / 'dev.jsonl'}:1"
  report = splits.report
  json.dumps(report)  # written to the run dir as JSON
  # the schema every task's report has (fjft.data.report), then classification's own keys
  assert set(report) == {"task", "source", "settings", "splits", "lengths", "skipped", "bad_rows",
                         "duplicates_removed", "overlap_removed", "warnings",
                         "num_labels", "labels"}
  assert report["task"] == "classify" and report["lengths"]["train"]["unit"] == "words"
  assert set(report["splits"]["train"]) >= {
      "source", "rows_read", "examples", "bad_rows", "skipped", "duplicates_removed",
      "overlap_removed", "dropped", "drop_examples",
      "files", "rows_kept", "duplicates_kept", "label_counts", "length_words", "moved_to_dev"}
  assert report["splits"]["train"]["examples"] == 20
  assert report["splits"]["train"]["label_counts"] == {"neg": 10, "pos": 10}
  assert report["splits"]["train"]["length_words"] == {"p50": 3, "p90": 3, "p99": 3, "max": 3}
  assert report["splits"]["dev"]["carved_from_train"] is False
  _check_accounting(report)
  text = format_report(report)
  assert "train 20 read -> 20 kept" in text and "dev   2 read -> 2 kept" in text
  assert "words: p50 3" in text
  # the header as fjft has always printed it (the quickstart's first report line)
  assert text.startswith(f"data: {tmp_path} (text column 'text', label column 'label'): 2 labels\n")


def test_validation_file_is_dev_and_test_is_optional(tmp_path):
  _jsonl(tmp_path / "train.jsonl", _train_rows(10))
  tmp_path.joinpath("validation.csv").write_text("text,label\nv,pos\n")
  splits = load_classification_splits(_cfg(tmp_path))
  assert [e.text for e in splits.dev] == ["v"] and splits.test == []
  assert "test" not in splits.report["splits"]


def test_cleaning_and_dedup_and_conflicts(tmp_path):
  train = [("Good  film", "pos"), ("good film", "pos"), ("Good film", "pos"), ("Good\tfilm", "neg"),
           ("bad film", "neg"), ("Good film", "neg")]
  splits = load_classification_splits(_cfg(_jsonl(tmp_path / "t.jsonl", train), dev_fraction=0.0))
  assert [(e.text, e.label) for e in splits.train] == [
      ("Good film", "pos"), ("good film", "pos"), ("bad film", "neg")]
  dropped = splits.report["splits"]["train"]["dropped"]
  assert dropped == {"duplicates": 1, "conflicting labels": 2}
  example = splits.report["splits"]["train"]["drop_examples"]["conflicting labels"][0]
  assert example.endswith("t.jsonl:4: label 'neg', but " + f"{tmp_path / 't.jsonl'}:1 has the "
                          "same text with label 'pos'")
  _check_accounting(splits.report)


def test_lowercase_merges_case_duplicates(tmp_path):
  rows = [("Good film", "pos"), ("good FILM", "pos"), ("bad", "neg")]
  splits = load_classification_splits(_cfg(_jsonl(tmp_path / "t.jsonl", rows), dev_fraction=0.0,
                                           lowercase=True))
  assert [e.text for e in splits.train] == ["good film", "bad"]


def test_dedup_off_keeps_duplicates_but_counts_them(tmp_path):
  rows = [("same", "pos"), ("same", "pos"), ("other", "neg")]
  splits = load_classification_splits(_cfg(_jsonl(tmp_path / "t.jsonl", rows), dev_fraction=0.0,
                                           dedup=False))
  assert len(splits.train) == 3
  assert splits.report["splits"]["train"]["duplicates_kept"] == 1


def test_overlap_with_dev_and_test_is_removed_from_train_and_test_keeps_duplicates(tmp_path):
  folder = _folder(tmp_path, train=_train_rows(10) + [("in dev", "pos"), ("In  test", "neg")],
                   dev=[("in dev", "pos"), ("in dev", "pos")],
                   test=[("in test", "neg"), ("In test", "neg"), ("In test", "neg")])
  splits = load_classification_splits(_cfg(folder))
  assert [e.text for e in splits.train] == [t for t, _ in _train_rows(10)]
  assert len(splits.dev) == 1 and len(splits.test) == 3  # test size is never changed by dedup
  report = splits.report["splits"]
  assert report["train"]["dropped"] == {"overlap with dev/test": 2}
  assert report["train"]["overlap_removed"] == 2 and report["train"]["duplicates_removed"] == 0
  assert report["dev"]["dropped"] == {"duplicates": 1} and report["dev"]["duplicates_removed"] == 1
  assert splits.report["duplicates_removed"] == 1 and splits.report["overlap_removed"] == 2
  assert report["test"]["duplicates_kept"] == 1 and report["test"]["dropped"] == {}
  _check_accounting(splits.report)


def test_unseen_dev_label_is_a_bad_row(tmp_path):
  folder = _folder(tmp_path, train=_train_rows(10), dev=[("a", "pos"), ("b", "neg"), ("c", "maybe")])
  with pytest.raises(DataError, match=r"dev.jsonl:3: label 'maybe' unseen in train"):
    load_classification_splits(_cfg(folder))
  splits = load_classification_splits(_cfg(folder, on_bad_row="skip"))
  assert len(splits.dev) == 2
  assert splits.report["splits"]["dev"]["dropped"] == {"label unseen in train": 1}
  assert any("dev: skipped 1 bad row (" in w for w in splits.report["warnings"])


def test_empty_text_is_a_bad_row(tmp_path):
  path = _jsonl(tmp_path / "t.jsonl", _train_rows(6) + [(" \u200b\t", "pos")])
  with pytest.raises(DataError, match=r"t.jsonl:7: empty text"):
    load_classification_splits(_cfg(path))
  splits = load_classification_splits(_cfg(path, on_bad_row="skip", dev_fraction=0.0))
  assert len(splits.train) == 6
  report = splits.report["splits"]["train"]
  assert report["dropped"] == {"empty text": 1} and report["bad_rows"] == 1
  assert "e.g. " + report["drop_examples"]["empty text"][0] in format_report(splits.report)
  assert report["skipped"]["counts"] == {"empty text": 1} and splits.report["bad_rows"] == 1


def test_reader_bad_rows_are_counted_in_the_report(tmp_path):
  path = _jsonl(tmp_path / "t.jsonl", _train_rows(6) + ["{oops", '{"text": "x"}'])
  splits = load_classification_splits(_cfg(path, on_bad_row="skip", dev_fraction=0.0))
  report = splits.report["splits"]["train"]
  assert report["rows_read"] == 8 and report["rows_kept"] == 6
  assert report["dropped"] == {"invalid JSON": 1, "missing column 'label'": 1}
  _check_accounting(splits.report)


def test_carved_dev_is_stratified_deterministic_and_seeded(tmp_path):
  rows = [(f"text {i}", "a" if i % 10 < 7 else "b") for i in range(1000)]
  path = _jsonl(tmp_path / "train.jsonl", rows)
  first = load_classification_splits(_cfg(path))
  again = load_classification_splits(_cfg(path))
  assert [e.text for e in first.dev] == [e.text for e in again.dev]
  assert collections.Counter(e.label for e in first.dev) == {"a": 70, "b": 30}
  assert len(first.train) == 900 and not {e.text for e in first.dev} & {e.text for e in first.train}
  # sha256 of (split_seed, text): the same on every machine, Python version and hash seed.
  assert [e.text for e in first.dev[:3]] == ["text 6", "text 8", "text 9"]
  other_seed = load_classification_splits(_cfg(path, split_seed=1))
  assert {e.text for e in other_seed.dev} != {e.text for e in first.dev}
  report = first.report["splits"]
  assert report["dev"]["carved_from_train"] is True and report["train"]["moved_to_dev"] == 100
  assert "carved from train (dev_fraction 0.1, split_seed 0)" in format_report(first.report)
  _check_accounting(first.report)


def test_carved_dev_keeps_one_example_of_each_label_in_train(tmp_path):
  rows = _train_rows(20) + [("rare", "rare")]
  splits = load_classification_splits(_cfg(_jsonl(tmp_path / "t.jsonl", rows), dev_fraction=0.5))
  assert "rare" in {e.label for e in splits.train}
  assert collections.Counter(e.label for e in splits.dev) == {"neg": 5, "pos": 5}


def test_integer_labels_sort_numerically(tmp_path):
  rows = [(f"t{i}", label) for i, label in enumerate([10, 2, 1, 0, "10", 2])]
  splits = load_classification_splits(_cfg(_jsonl(tmp_path / "t.jsonl", rows), dev_fraction=0.0))
  assert splits.labels == ["0", "1", "2", "10"]
  assert list(splits.report["splits"]["train"]["label_counts"]) == ["0", "1", "2", "10"]


def test_text_labels_sort_as_text(tmp_path):
  rows = [("x", "b"), ("y", "a"), ("z", "10")]
  splits = load_classification_splits(_cfg(_jsonl(tmp_path / "t.jsonl", rows), dev_fraction=0.0))
  assert splits.labels == ["10", "a", "b"]


def test_small_train_warning_present_and_absent(tmp_path):
  path = _jsonl(tmp_path / "t.jsonl", _train_rows(40))
  warnings = load_classification_splits(_cfg(path, min_train_examples=500)).report["warnings"]
  small = [w for w in warnings if w.startswith("train has only 36 examples")]
  assert small and "TF-IDF baseline in results.json" in small[0]
  warnings = load_classification_splits(_cfg(path, min_train_examples=10)).report["warnings"]
  assert not any(w.startswith("train has only") for w in warnings)
  assert any(w.startswith("dev has only 4 examples") for w in warnings)


def test_imbalance_warning(tmp_path):
  rows = [(f"a{i}", "big") for i in range(50)] + [(f"b{i}", "small") for i in range(4)]
  report = load_classification_splits(_cfg(_jsonl(tmp_path / "t.jsonl", rows),
                                           dev_fraction=0.0)).report
  assert any("imbalanced" in w and "'small' has 4" in w for w in report["warnings"])
  rows += [(f"c{i}", "small") for i in range(4)]
  report = load_classification_splits(_cfg(_jsonl(tmp_path / "t.jsonl", rows),
                                           dev_fraction=0.0)).report
  assert not any("imbalanced" in w for w in report["warnings"])
  assert "warnings:\n  - dev is empty" in format_report(report)


def test_single_label_and_no_good_rows_are_errors(tmp_path):
  path = _jsonl(tmp_path / "t.jsonl", [("a", "x"), ("b", "x")])
  with pytest.raises(DataError, match="single label 'x'"):
    load_classification_splits(_cfg(path, dev_fraction=0.0))
  path = _jsonl(tmp_path / "t.jsonl", ['{"sentence": "a", "label": 1}'])
  with pytest.raises(DataError, match=r"no usable training examples .*missing column 'text' 1"):
    load_classification_splits(_cfg(path, on_bad_row="skip"))


def test_text_column_argument_overrides_config(tmp_path):
  path = tmp_path / "t.tsv"
  path.write_text("sentence\tlabel\nfine\t1\nbad\t0\n")
  splits = load_classification_splits(_cfg(path, dev_fraction=0.0), text_column="sentence")
  assert [e.text for e in splits.train] == ["fine", "bad"]


def test_plain_attribute_object_with_defaults(tmp_path):
  path = _jsonl(tmp_path / "t.jsonl", _train_rows(20))
  splits = load_classification_splits(types.SimpleNamespace(path=str(path)))
  assert len(splits.dev) == 2 and splits.report["settings"]["min_train_examples"] == 500


@pytest.mark.parametrize("field,value", [("on_bad_row", "ignore"), ("dev_fraction", 1.0),
                                         ("split_seed", -1), ("dedup", "yes"), ("path", "")])
def test_bad_config_values_name_the_field(tmp_path, field, value):
  path = _jsonl(tmp_path / "t.jsonl", _train_rows(4))
  with pytest.raises(ConfigError, match=f"data.{field}"):
    load_classification_splits(_cfg(**{"path": path, field: value}))


def test_folder_without_train_file_or_with_two(tmp_path):
  _jsonl(tmp_path / "dev.jsonl", _train_rows(4))
  with pytest.raises(DataError, match=r"has no train file .*found: dev.jsonl"):
    load_classification_splits(_cfg(tmp_path))
  _jsonl(tmp_path / "train.jsonl", _train_rows(4))
  _jsonl(tmp_path / "validation.jsonl", _train_rows(4))
  with pytest.raises(DataError, match=r"several dev files \(dev.jsonl, validation.jsonl\)"):
    load_classification_splits(_cfg(tmp_path))


def test_missing_local_path(tmp_path):
  with pytest.raises(DataError, match=r"data.path: .*nope/train.csv does not exist"):
    load_classification_splits(_cfg(tmp_path / "nope" / "train.csv"))


def test_hf_name_without_datasets_installed(monkeypatch):
  monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
  with pytest.raises(DataError, match=r"'stanfordnlp/sst2' is not a local file or folder.*"
                     r"`datasets` package is not installed.*local path"):
    load_classification_splits(_cfg("stanfordnlp/sst2"))


def test_hf_dataset_with_class_label_names_and_unlabelled_test(monkeypatch):
  class Split(list):
    features = {"label": types.SimpleNamespace(names=["negative", "positive"])}

  calls = []

  def load_dataset(name, config):
    calls.append((name, config))
    return {"train": Split([{"sentence": f"s{i}", "label": i % 2} for i in range(10)]),
            "validation": Split([{"sentence": "v", "label": 1}]),
            "test": Split([{"sentence": "t", "label": -1}])}

  monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
  splits = load_classification_splits(_cfg("glue:sst2"), text_column="sentence")
  assert calls == [("glue", "sst2")]
  assert splits.labels == ["negative", "positive"] and splits.dev[0].label == "positive"
  assert splits.test == [] and splits.train[0].where == "glue:sst2[train]:row 1"
  assert any("glue:sst2[test] has no labels" in w for w in splits.report["warnings"])


def test_hf_load_failure_is_a_data_error(monkeypatch):
  def load_dataset(name, config):
    raise ConnectionError("hub not reachable")

  monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
  with pytest.raises(DataError, match=r"loading it as a Hugging Face dataset failed "
                     r"\(ConnectionError: hub not reachable\).*local path"):
    load_classification_splits(_cfg("owner/name"))


@pytest.mark.skipif(not SHARED_DATA.is_dir(),
                    reason=f"real task data not found at {SHARED_DATA} (the shared/ folder "
                    "beside the repo root)")
def test_real_data_sst2_and_banking77():
  sst2 = load_classification_splits(_cfg(SHARED_DATA / "sst2", min_train_examples=500),
                                    text_column="sentence")
  assert sst2.labels == ["0", "1"]
  assert 55_000 < len(sst2.train) <= 60_614 and 6_500 < len(sst2.dev) <= 6_735
  banking = load_classification_splits(_cfg(SHARED_DATA / "banking77", label_column="category"))
  assert len(banking.labels) == 77
  assert 8_000 < len(banking.train) and 900 < len(banking.dev) < 1_100
  for splits, n_test in ((sst2, 872), (banking, 3_080)):
    test = splits.report["splits"]["test"]
    assert test["rows_read"] == n_test
    assert len(splits.test) == n_test - test["bad_rows"]  # only bad rows leave test
    _check_accounting(splits.report)
    assert not {e.text for e in splits.train} & {e.text for e in splits.dev + splits.test}
