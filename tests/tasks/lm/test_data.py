"""Causal-LM data: loss masks of the three data shapes, packing, the chunked loss."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fjft.data import packing as lm
from fjft.data.readers import BadRowStats
from fjft.errors import DataError
from fjft.models import decoder, llama
from fjft.tasks.lm import loss as lm_loss


@pytest.fixture(scope="module")
def tokenizer(smollm2_gguf):
  from fjft.models.tokenizer import Tokenizer
  from fjft.weights import gguf_io
  g = gguf_io.read_gguf(smollm2_gguf)
  return Tokenizer.from_gguf(g.tokenizer_meta, g.chat_template)


CHAT = [{"role": "system", "content": "You are a bank's support agent."},
        {"role": "user", "content": "My card was swallowed by the ATM."},
        {"role": "assistant", "content": "I'm sorry! I have frozen the card."},
        {"role": "user", "content": "Thanks. Can I get a new one?"},
        {"role": "assistant", "content": "Yes: a new card ships within 3 days."}]


def test_chat_loss_mask_covers_exactly_the_assistant_turns(tokenizer):
  ex = lm.from_chat(tokenizer, CHAT, "chats.jsonl:1")
  # the rendered conversation, token for token
  full = tokenizer.apply_chat_template(CHAT, add_generation_prompt=False)
  assert tokenizer.decode(ex.ids, skip_special_tokens=False) == full
  trained = tokenizer.decode(ex.ids[ex.loss_mask], skip_special_tokens=False)
  assert trained == ("I'm sorry! I have frozen the card.<|im_end|>\n"
                     "Yes: a new card ships within 3 days.<|im_end|>\n")
  # everything before the first reply (system, user, the assistant header) is prompt
  first = int(np.argmax(ex.loss_mask))
  assert tokenizer.decode(ex.ids[:first], skip_special_tokens=False).endswith(
      "<|im_start|>assistant\n")


def test_prompt_response_and_text_masks(tokenizer):
  ex = lm.from_prompt_response(tokenizer, "Translate: hola", "hello", "pairs.csv:2",
                               use_chat_template=False)
  assert tokenizer.decode(ex.ids[ex.loss_mask], skip_special_tokens=False) == (
      "hello" + tokenizer.decode([tokenizer.eos_id], skip_special_tokens=False))
  everything = lm.from_prompt_response(tokenizer, "Translate: hola", "hello", "pairs.csv:2",
                                       use_chat_template=False, train_on_prompt=True)
  assert everything.loss_mask.all()
  chat = lm.from_prompt_response(tokenizer, "Translate: hola", "hello", "pairs.csv:2",
                                 use_chat_template=True)
  assert tokenizer.decode(chat.ids[chat.loss_mask], skip_special_tokens=False) == (
      "hello<|im_end|>\n")
  text = lm.from_text(tokenizer, "To be, or not to be", "play.txt:1")
  assert text.loss_mask.sum() == len(text) - (tokenizer.bos_id is not None)


@pytest.mark.parametrize("messages, why", [
    ([{"role": "user", "content": "hi"}], "no assistant turn"),
    ([{"role": "user", "content": "hi"}, {"role": "bot", "content": "hello"}], "role 'bot'"),
    ([{"role": "user"}, {"role": "assistant", "content": "x"}], "string 'content'"),
    ("hello", "non-empty list"),
])
def test_bad_chats_name_the_row(tokenizer, messages, why):
  with pytest.raises(DataError, match=f"^chats.jsonl:7: .*{why}"):
    lm.from_chat(tokenizer, messages, "chats.jsonl:7")


def test_a_row_longer_than_the_context_errors_or_is_counted(tokenizer):
  ex = lm.from_text(tokenizer, "word " * 50, "notes.txt:3")
  with pytest.raises(DataError, match=r"^notes.txt:3: \d+ tokens, more than data.max_length=16"):
    lm.check_length(ex, 16, on_bad_row="error", stats=BadRowStats())
  stats = BadRowStats()
  assert lm.check_length(ex, 16, on_bad_row="skip", stats=stats) is None
  assert stats.counts == {"longer than the context": 1}
  assert lm.check_length(ex, 4096, on_bad_row="error", stats=stats) is ex


def _examples(n, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    k = int(rng.integers(3, 14))
    out.append(lm.LMExample(rng.integers(1, 60, k).astype(np.int32),
                            rng.random(k) < 0.7, f"x:{i}"))
  return out


def test_packing_is_dense_and_keeps_every_token():
  examples = _examples(40)
  rows = lm.pack(examples, 32, pad_id=0)
  assert len(rows) < len(examples) / 2
  assert (rows.segment_ids > 0).sum() == sum(len(e) for e in examples)
  # each segment holds one example's tokens in order, positions restarting at 0
  seen = []
  for r in range(len(rows)):
    for seg in range(1, rows.segment_ids[r].max() + 1):
      sel = rows.segment_ids[r] == seg
      assert (rows.positions[r][sel] == np.arange(sel.sum())).all()
      seen.append(tuple(rows.input_ids[r][sel]))
  assert sorted(seen) == sorted(tuple(e.ids) for e in examples)


def _loss(model, rows: lm.Rows, chunk_tokens):
  ids = jnp.asarray(rows.input_ids)
  seg = jnp.asarray(rows.segment_ids)
  f = model.features(ids, jnp.asarray(rows.positions), segment_ids=seg)
  targets, weights = lm_loss.shifted_targets(ids, jnp.asarray(rows.loss_mask), seg)
  return lm_loss.cross_entropy(f, targets, weights, chunk_tokens=chunk_tokens)


def test_packed_and_unpacked_rows_give_the_same_loss():
  cfg = llama.Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                     num_heads=4, num_kv_heads=2, max_position_embeddings=64)
  model = llama.init_random(cfg, seed=1)
  examples = _examples(12)
  packed, _ = _loss(model, lm.pack(examples, 40, pad_id=0), 64)
  alone, n = _loss(model, lm.one_per_row(examples, 16, pad_id=0), 64)
  assert n == sum(int(e.loss_mask[1:].sum()) for e in examples)
  np.testing.assert_allclose(packed, alone, rtol=2e-5)


# 21 tokens: 4 a chunk pads the last chunk; None fits all 21 in the logits budget (one pass)
@pytest.mark.parametrize("chunk_tokens", [4, None])
def test_chunked_cross_entropy_matches_full_logits_with_gradients(chunk_tokens):
  rng = np.random.default_rng(0)
  hidden = jnp.asarray(rng.normal(size=(3, 7, 16)), jnp.float32)
  head = jnp.asarray(rng.normal(size=(16, 50)), jnp.float32)
  targets = jnp.asarray(rng.integers(0, 50, (3, 7)), jnp.int32)
  weights = jnp.asarray(rng.random((3, 7)) < 0.6, jnp.float32)

  def chunked(h, w):
    return lm_loss.cross_entropy(decoder.Features(h, w, None, jnp.float32), targets, weights,
                                 chunk_tokens=chunk_tokens)[0]

  def full(h, w):
    logits = h @ w
    ce = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, targets[..., None], -1)[..., 0]
    return jnp.sum(ce * weights)

  np.testing.assert_allclose(chunked(hidden, head), full(hidden, head), rtol=1e-5)
  for a, b in zip(jax.grad(chunked, (0, 1))(hidden, head), jax.grad(full, (0, 1))(hidden, head)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _pairs_folder(folder, splits):
  import json
  for name, rows in splits.items():
    with open(folder / f"{name}.jsonl", "w") as f:
      for prompt, response in rows:
        f.write(json.dumps({"prompt": prompt, "response": response}) + "\n")
  return folder


def _lm_data_cfg(path, **fields):
  from fjft.tasks.lm.config import default_config
  c = default_config().data
  c.path, c.format, c.max_length = str(path), "prompt_response", 64
  c.use_chat_template = False   # prompt + response + EOS: the prompt decodes back as it was
  for k, v in fields.items():
    setattr(c, k, v)
  return c


def test_lm_duplicates_and_overlap_are_dropped_and_counted(tokenizer, tmp_path):
  from fjft.data.report import format_report
  from fjft.tasks.lm import data as lm_data
  rows = lambda *names: [(f"question {n}", f"answer {n}") for n in names]
  folder = _pairs_folder(tmp_path, {"train": rows("a", "b", "a", "c", "in test", "in dev"),
                                    "dev": rows("in dev", "d", "d", "in test"),
                                    "test": rows("in test", "in test", "e")})
  s = lm_data.load_lm_splits(_lm_data_cfg(folder), tokenizer)
  prompts = lambda exs: [tokenizer.decode(ex.ids[~ex.loss_mask]).strip().removeprefix("question ")
                         for ex in exs]
  assert prompts(s.train) == ["a", "b", "c"]
  assert prompts(s.dev) == ["in dev", "d"]
  assert prompts(s.test) == ["in test", "in test", "e"]   # test is left as it is
  report = s.report
  assert report["task"] == "lm" and report["format"] == "prompt_response"
  train, dev = report["splits"]["train"], report["splits"]["dev"]
  assert train["dropped"] == {"duplicates": 1, "overlap with dev/test": 2}
  assert (train["rows_read"], train["examples"]) == (6, 3)
  assert train["drop_examples"]["duplicates"] == [f"{folder / 'train.jsonl'}:3: same example as "
                                                  f"{folder / 'train.jsonl'}:1"]
  assert dev["dropped"] == {"duplicates": 1, "overlap with test": 1}
  assert report["duplicates_removed"] == 2 and report["overlap_removed"] == 3
  assert report["lengths"]["train"]["unit"] == "tokens"
  assert "overlap with dev/test 2" in format_report(report)
  everything = lm_data.load_lm_splits(_lm_data_cfg(folder, drop_duplicates=False), tokenizer)
  assert [len(everything.train), len(everything.dev), len(everything.test)] == [6, 4, 3]
  assert everything.report["duplicates_removed"] == everything.report["overlap_removed"] == 0


def test_lm_hashed_hold_out_is_the_shared_splitter(tokenizer, tmp_path):
  import json
  from fjft.data.splits import hashed_choice
  from fjft.tasks.lm import data as lm_data
  rows = [(f"question {i}", f"answer {i}") for i in range(60)]
  folder = _pairs_folder(tmp_path, {"train": rows})
  s = lm_data.load_lm_splits(_lm_data_cfg(folder / "train.jsonl", test_fraction=0.1,
                                          dev_fraction=0.1, split_seed=5), tokenizer)
  test = hashed_choice([json.dumps(list(r)) for r in rows], 0.1, 5, salt="test\0")
  assert sorted(int(ex.where.rsplit(":", 1)[1]) - 1 for ex in s.test) == sorted(test)
  assert (len(s.train), len(s.dev), len(s.test)) == (49, 5, 6)
  assert s.report["splits"]["test"]["rows_read"] == 6 and s.report["splits"]["train"][
      "rows_read"] == 49


def _data_cfg(**fields):
  from fjft.tasks.lm.config import default_config
  c = default_config().data
  c.format = "chat"
  for k, v in fields.items():
    setattr(c, k, v)
  return c


def test_data_chat_template_replaces_the_models_and_bad_ones_name_the_field(tokenizer, tmp_path):
  from fjft.errors import ConfigError
  from fjft.tasks.lm.data import chat_tokenizer
  assert chat_tokenizer(_data_cfg(), tokenizer, "m") is tokenizer
  path = tmp_path / "t.jinja"
  path.write_text("{% for m in messages %}{{ m.role }}: {{ m.content }}<|im_end|>{% endfor %}")
  own = chat_tokenizer(_data_cfg(chat_template=str(path)), tokenizer, "m")
  ex = lm.from_chat(own, CHAT[1:3], "x:1")
  # this template writes no generation prompt: a served model is given the user turn
  # alone, so it is the reply's header too that the model learns to write
  assert own.decode(ex.ids[ex.loss_mask], skip_special_tokens=False) == (
      "assistant: I'm sorry! I have frozen the card.<|im_end|>")
  with pytest.raises(ConfigError, match=r"^config field data.chat_template: .*nope.jinja"):
    chat_tokenizer(_data_cfg(chat_template=str(tmp_path / "nope.jinja")), tokenizer, "m")
  path.write_text("{% for m in messages %}")
  with pytest.raises(ConfigError, match=r"data.chat_template: .*not valid Jinja"):
    chat_tokenizer(_data_cfg(chat_template=str(path)), tokenizer, "m")
  bare = tokenizer.with_chat_template("x")
  bare.chat_template = None
  with pytest.raises(ConfigError, match=r"model m has no chat template.*data.chat_template="):
    chat_tokenizer(_data_cfg(), bare, "m")
  with pytest.raises(ConfigError, match=r"data.use_chat_template=False"):
    chat_tokenizer(_data_cfg(format="prompt_response"), bare, "m")
  assert chat_tokenizer(_data_cfg(format="prompt_response", use_chat_template=False), bare,
                        "m") is bare


def test_a_chat_the_template_rejects_is_a_bad_row(tokenizer, tmp_path):
  from fjft.tasks.lm import data as lm_data
  strict = tokenizer.with_chat_template(
      "{% if messages[0].role == 'system' %}{{ raise_exception('no system turns') }}{% endif %}"
      "{% for m in messages %}{{ m.content }}<|im_end|>{% endfor %}")
  raw = lm_data._Raw([CHAT, CHAT[1:3]], ["c.jsonl:1", "c.jsonl:2"], "c.jsonl")
  with pytest.raises(DataError, match=r"^c.jsonl:1: .*rejected the conversation: no system"):
    lm_data._encode(raw, _data_cfg(), strict)
  kept = lm_data._encode(raw, _data_cfg(on_bad_row="skip"), strict)
  assert [ex.where for ex in kept] == ["c.jsonl:2"]
  assert raw.stats.counts == {"not rendered by the chat template": 1}
