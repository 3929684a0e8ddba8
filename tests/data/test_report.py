"""The shared data layer: the one hashed splitter, dedup and overlap removal, the report schema."""

import hashlib
import json

from fjft.data import dedup
from fjft.data import report as report_lib
from fjft.data.readers import BadRowStats
from fjft.data.splits import hash_rank, hashed_choice, held_out_count

# The keys every task's report has, at the top and in each split (fjft.data.report).
TOP_KEYS = {"task", "source", "settings", "splits", "lengths", "skipped", "bad_rows",
            "duplicates_removed", "overlap_removed", "warnings"}
SPLIT_KEYS = {"source", "rows_read", "examples", "bad_rows", "skipped", "duplicates_removed",
              "overlap_removed", "dropped", "drop_examples"}


def test_hashed_choice_ranks_by_sha256_of_seed_salt_and_key():
  keys = [f"row {i}" for i in range(200)]
  chosen = hashed_choice(keys, 0.1, seed=3, salt="test:")
  expected = sorted(range(200), key=lambda i: hashlib.sha256(f"3\0test:row {i}".encode()).digest())
  assert chosen == set(expected[:20])
  assert hash_rank(3, "test:row 0") == hashlib.sha256("3\0test:row 0".encode()).digest()
  # the choice of a key does not depend on where its row is
  assert {keys[i] for i in chosen} == {keys[::-1][i] for i in hashed_choice(keys[::-1], 0.1, 3,
                                                                              salt="test:")}
  assert chosen != hashed_choice(keys, 0.1, seed=4, salt="test:")
  assert chosen != hashed_choice(keys, 0.1, seed=3, salt="dev:")


def test_hashed_choice_strata_keep_one_and_rounding():
  assert [held_out_count(n, 0.25) for n in (1, 2, 6, 10)] == [0, 1, 2, 3]  # half rounds up
  labels = ["a"] * 30 + ["b"] * 10 + ["c"]
  keys = [f"t{i}" for i in range(len(labels))]
  chosen = hashed_choice(keys, 0.5, 0, strata=labels, keep_one=True)
  assert sorted(labels[i] for i in chosen) == ["a"] * 15 + ["b"] * 5   # "c" keeps its one
  assert len(hashed_choice(keys, 0.999, 0, keep_one=True)) == len(keys) - 1
  assert len(hashed_choice(keys, 0.999, 0)) == len(keys)


def _items(split, texts):
  return [(text, f"{split}.jsonl:{i}") for i, text in enumerate(texts, 1)]


def test_dedup_splits_drops_repeats_and_overlap_and_keeps_test():
  splits = {"train": _items("train", ["a", "b", "a", "t", "d", "c"]),
            "dev": _items("dev", ["d", "e", "e", "t"]),
            "test": _items("test", ["t", "t", "x"])}
  removed = {name: BadRowStats() for name in splits}
  merged = []
  kept = dedup.dedup_splits(splits, lambda it: it[0], lambda it: it[1], removed,
                            merge=lambda repeat, first: merged.append((repeat[1], first[1])))
  assert {name: [t for t, _ in items] for name, items in kept.items()} == {
      "train": ["a", "b", "c"], "dev": ["d", "e"], "test": ["t", "t", "x"]}
  assert merged == [("train.jsonl:3", "train.jsonl:1"), ("dev.jsonl:3", "dev.jsonl:2")]
  assert removed["train"].counts == {report_lib.DUPLICATES: 1, report_lib.OVERLAP: 2}
  assert removed["dev"].counts == {report_lib.DUPLICATES: 1, report_lib.OVERLAP_TEST: 1}
  assert removed["test"].counts == {}
  assert removed["train"].examples[report_lib.OVERLAP] == [
      "train.jsonl:4: same example as test.jsonl:1", "train.jsonl:5: same example as dev.jsonl:1"]


def test_build_report_has_the_common_schema_and_totals():
  bad, removed = BadRowStats(), BadRowStats()
  bad.add("t.jsonl:3", "invalid JSON")
  removed.add("t.jsonl:5", report_lib.DUPLICATES, "same example as t.jsonl:1")
  removed.add("t.jsonl:6", report_lib.OVERLAP, "same example as test.jsonl:1")
  unsplit = BadRowStats()
  unsplit.add("corpus.jsonl:9", "empty document")
  splits = {"train": report_lib.split_entry("t.jsonl", 10, 7, bad, removed, tokens=70,
                                            trained_tokens=60),
            "test": report_lib.split_entry("test.jsonl", 4, 4, BadRowStats(), tokens=9,
                                           trained_tokens=5)}
  report = report_lib.build_report(
      "lm", source="data/", settings={"path": "data/", "max_length": 8}, splits=splits,
      lengths={"train": report_lib.length_stats([3, 5, 9], "tokens")}, warnings=["look"],
      unsplit=unsplit, format="text")
  json.dumps(report)
  assert set(report) == TOP_KEYS | {"format"}
  assert set(report["splits"]["train"]) == SPLIT_KEYS | {"tokens", "trained_tokens"}
  assert report["settings"] == {"max_length": 8}
  assert report["bad_rows"] == 2 and report["skipped"]["counts"] == {"empty document": 1,
                                                                    "invalid JSON": 1}
  assert report["duplicates_removed"] == 1 and report["overlap_removed"] == 1
  train = report["splits"]["train"]
  assert train["dropped"] == {"invalid JSON": 1, "duplicates": 1, "overlap with dev/test": 1}
  assert train["drop_examples"]["duplicates"] == ["t.jsonl:5: same example as t.jsonl:1"]
  assert report["lengths"]["train"] == {"unit": "tokens", "p50": 5, "p90": 9, "p99": 9, "max": 9}
  assert report["warnings"] == [
      "train: skipped 1 bad row (invalid JSON: 1); examples in the report",
      "skipped 1 bad row (empty document: 1); examples in the report", "look"]
  text = report_lib.format_report(report)
  assert "train 10 read -> 7 kept  [t.jsonl]" in text
  assert "dropped: invalid JSON 1, duplicates 1, overlap with dev/test 1" in text
  assert "tokens: p50 5, p90 9, p99 9, max 9" in text and "70 tokens, 60 of them trained" in text
  assert "skipped before splitting: empty document 1" in text
  assert text.endswith("warnings:\n  - " + "\n  - ".join(report["warnings"]))
