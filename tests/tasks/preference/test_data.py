"""Preference pairs: the row layouts, bad pairs by file and line, truncation, the real HH file."""

import json
import os

import numpy as np
import pytest

from fjft.data import readers
from fjft.errors import DataError
from fjft.tasks.preference import data as pref_data
from fjft.tasks.preference.config import default_config

HH_FILE = ("hh_rlhf_harmless", "harmless-base-test.jsonl.gz")


def _cfg(**fields):
  c = default_config().data
  for k, v in fields.items():
    setattr(c, k, v)
  return c


def _pair(obj, cfg=None):
  return pref_data.to_pair(obj, "p.jsonl:3", cfg or _cfg())


def test_hh_dialogues_split_at_the_last_reply():
  chosen = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Help me?\n\nAssistant: Sure."
  rejected = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Help me?\n\nAssistant: No."
  pair = _pair({"chosen": chosen, "rejected": rejected})
  assert pair.prompt == (("user", "Hi there"), ("assistant", "Hello!"), ("user", "Help me?"))
  assert (pair.chosen, pair.rejected) == ("Sure.", "No.")
  with pytest.raises(DataError, match=r"^p.jsonl:3: the chosen and rejected dialogues differ"):
    _pair({"chosen": chosen, "rejected": rejected.replace("Hi there", "Hey")})


def test_prompt_columns_texts_and_message_lists():
  assert _pair({"prompt": "2+2?", "chosen": "4", "rejected": "5"}).prompt == (("user", "2+2?"),)
  # Hugging Face layout: chosen/rejected hold the whole conversation, prompt repeated
  convo = [{"role": "user", "content": "2+2?"}]
  pair = _pair({"prompt": convo, "chosen": convo + [{"role": "assistant", "content": "4"}],
                "rejected": convo + [{"role": "assistant", "content": "5"}]})
  assert (pair.prompt, pair.chosen, pair.rejected) == ((("user", "2+2?"),), "4", "5")
  # no prompt column: message lists sharing their start
  pair = _pair({"chosen": convo + [{"role": "assistant", "content": "4"}],
                "rejected": convo + [{"role": "assistant", "content": "5"}]})
  assert pair.prompt == (("user", "2+2?"),)


@pytest.mark.parametrize("obj, why", [
    ({"chosen": "a"}, r"no 'rejected' column"),
    ({"prompt": "q", "chosen": "same", "rejected": "same"}, "the same text"),
    ({"chosen": "just a reply", "rejected": "another"}, "no prompt before the replies"),
    ({"prompt": "q", "chosen": 3, "rejected": "x"}, "chosen must be a text or"),
    ({"chosen": [{"role": "user", "content": "q"}], "rejected": [{"role": "user", "content": "q"}]},
     "does not end with an assistant reply"),
])
def test_bad_pairs_say_what_is_wrong(obj, why):
  with pytest.raises(DataError, match=f"^p.jsonl:3: .*{why}"):
    _pair(obj)


def test_bad_rows_stop_with_file_and_line_or_are_counted(tmp_path):
  path = tmp_path / "pairs.jsonl"
  path.write_text("\n".join([json.dumps({"prompt": "q1", "chosen": "a", "rejected": "b"}),
                             "{not json",
                             json.dumps({"prompt": "q3", "chosen": "a", "rejected": "a"})]) + "\n")
  with pytest.raises(DataError, match=rf"^{path}:2: invalid JSON"):
    pref_data.read_pairs(str(path), _cfg(), readers.BadRowStats())
  stats = readers.BadRowStats()
  pairs = pref_data.read_pairs(str(path), _cfg(on_bad_row="skip"), stats)
  assert [p.where for p in pairs] == [f"{path}:1"]
  assert stats.counts == {"invalid JSON": 1, "bad pair": 1}


def test_csv_cells_holding_message_lists(tmp_path):
  import csv
  path = tmp_path / "pairs.csv"
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["prompt", "chosen", "rejected"])
    w.writerow([json.dumps([{"role": "user", "content": "q"}]), "yes", "no"])
  (pair,) = pref_data.read_pairs(str(path), _cfg(), readers.BadRowStats())
  assert (pair.prompt, pair.chosen) == ((("user", "q"),), "yes")


def test_long_pairs_keep_the_prompts_end_and_the_replies_start(smollm2_tokenizer):
  pair = pref_data.Pair((("user", "word " * 300 + "THE QUESTION"),), "short yes", "no " * 200,
                        "p.jsonl:1")
  enc, cut_prompt, cut_reply = pref_data.encode(smollm2_tokenizer, pair, _cfg(max_length=64))
  assert cut_prompt and cut_reply
  for ids, mask in zip(enc.ids, enc.mask):
    assert len(ids) <= 64 and mask.any()
    prompt = smollm2_tokenizer.decode(ids[:int(np.argmax(mask))], skip_special_tokens=False)
    assert "THE QUESTION" in prompt
  assert smollm2_tokenizer.decode(enc.ids[0][enc.mask[0]], skip_special_tokens=False).startswith(
      "short yes<|im_end|>")
  enc, cut_prompt, cut_reply = pref_data.encode(smollm2_tokenizer, pair, _cfg(max_length=1024))
  assert not cut_prompt and not cut_reply


def test_only_the_last_reply_of_a_dialogue_is_scored(smollm2_tokenizer):
  # the chat renderer marks every assistant turn; the earlier ones are the pair's prompt
  pair = pref_data.Pair((("user", "Hi there"), ("assistant", "EARLIER TURN"), ("user", "Help?")),
                        "Sure thing.", "No.", "p.jsonl:1")
  for max_length in (1024, 40):
    enc, _, cut_reply = pref_data.encode(smollm2_tokenizer, pair, _cfg(max_length=max_length))
    assert not cut_reply
    scored = [smollm2_tokenizer.decode(ids[mask], skip_special_tokens=False)
              for ids, mask in zip(enc.ids, enc.mask)]
    assert scored == ["Sure thing.<|im_end|>\n", "No.<|im_end|>\n"]
  assert "EARLIER TURN" in smollm2_tokenizer.decode(
      pref_data.encode(smollm2_tokenizer, pair, _cfg(max_length=1024))[0].ids[0])


def test_the_hh_harmless_pairs(shared_data, smollm2_tokenizer, tmp_path):
  path = os.path.join(shared_data, *HH_FILE)
  with pytest.raises(DataError, match=rf"{path}:1255: the chosen and rejected dialogues differ"):
    pref_data.load_splits(_cfg(path=path), smollm2_tokenizer, "m")
  splits, _ = pref_data.load_splits(_cfg(path=path, on_bad_row="skip", max_length=128),
                                    smollm2_tokenizer, "m")
  report = splits.report
  assert report["splits"]["train"]["skipped"]["counts"] == {"bad pair": 5}
  # every pair read is kept or counted (at 128 tokens, cut pairs can become duplicates)
  assert sum(s["examples"] + s["duplicates_removed"] + s["overlap_removed"]
             for s in report["splits"].values()) == 2307
  assert len(splits.test) > 200 and len(splits.texts["test"]) == len(splits.test)
  assert report["splits"]["train"]["prompts_shortened"] > 0
  # the same prompt ids before both replies, the replies trained
  ex = splits.train[0]
  first = [int(np.argmax(m)) for m in ex.mask]
  assert first[0] == first[1] and (ex.ids[0][:first[0]] == ex.ids[1][:first[1]]).all()
