"""GGUF reading and the GGUF tokenizer, against gguf-py and transformers' own GGUF loading."""

import json
import os

import numpy as np
import pytest

from fjft.errors import CheckpointError, FjftError
from fjft.models.tokenizer import Tokenizer
from fjft.weights import gguf_io
from tests.models import gguf_files

gguf = pytest.importorskip("gguf")

TEXTS = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog, doesn't it? We'll see; they've LEFT.",
    "Ünïcödé àccents, CJK 漢字 and Ελληνικά",
    "emoji 😀👍🏽 and a family 👨‍👩‍👧",
    "In 2024 there were 366 days; pi ~ 3.14159 and 1,000,000 > 999999.",
    "def square(x):\n    return x ** 2  # comment\n\n\tindented\r\n",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "   leading and trailing spaces   ",
    "<repo_name>fjft<file_sep>README.md",
    "",
]

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2 + 2?"},
     {"role": "assistant", "content": "4."}],
    [{"role": "system", "content": "You are terse."},
     {"role": "user", "content": "Name a prime."}],
]


# ------------------------------------------------------ the packaged model --


@pytest.fixture(scope="module")
def ours(smollm2_gguf):
  return gguf_io.read_gguf(smollm2_gguf)


@pytest.fixture(scope="module")
def tokenizer(ours):
  return Tokenizer.from_gguf(ours.tokenizer_meta, ours.chat_template)


@pytest.mark.slow
def test_every_tensor_matches_transformers(ours, hf_smollm2):
  model, _ = hf_smollm2
  theirs = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  assert ours.hf_config["tie_word_embeddings"] is True
  assert "lm_head.weight" not in ours.tensors
  theirs.pop("lm_head.weight")  # tied: the same tensor as embed_tokens
  assert sorted(ours.tensors) == sorted(theirs)
  for name, w in ours.tensors.items():
    assert w.dtype == np.float32, name
    assert w.shape == theirs[name].shape, name
    np.testing.assert_allclose(w, theirs[name], rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_config_matches_transformers(ours, hf_smollm2):
  model, _ = hf_smollm2
  hf = model.config
  cfg = ours.hf_config
  assert ours.arch == "llama" and cfg["model_type"] == hf.model_type == "llama"
  for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
              "num_attention_heads", "num_key_value_heads", "head_dim",
              "max_position_embeddings", "bos_token_id", "eos_token_id"):
    assert cfg[key] == getattr(hf, key), key
  assert cfg["rms_norm_eps"] == pytest.approx(hf.rms_norm_eps, rel=1e-6)
  params = getattr(hf, "rope_parameters", None)
  theta = params["rope_theta"] if params else hf.rope_theta
  assert cfg["rope_theta"] == theta
  assert "rope_scaling" not in cfg
  assert ours.chat_template and "<|im_start|>" in ours.chat_template


@pytest.mark.slow
def test_tokenizer_ids_match_transformers(tokenizer, hf_smollm2):
  _, hf = hf_smollm2
  for text in TEXTS:
    ids = tokenizer.encode(text)
    assert ids == hf(text)["input_ids"], text
    assert tokenizer.decode(ids, skip_special_tokens=False) == text
  # Chat markup stays whole: one id per control token.
  assert tokenizer.encode("<|im_start|>user")[0] == hf.convert_tokens_to_ids("<|im_start|>")
  assert tokenizer.bos_id == hf.bos_token_id == 1
  assert tokenizer.eos_id == hf.eos_token_id == 2
  assert tokenizer.pad_id == hf.pad_token_id
  assert tokenizer.vocab_size == len(hf)


@pytest.mark.slow
def test_decode_skips_special_tokens(tokenizer, hf_smollm2):
  _, hf = hf_smollm2
  ids = tokenizer.encode(TEXTS[6])
  text = tokenizer.decode(ids)
  assert text == hf.decode(ids, skip_special_tokens=True) == "user\nhi\nassistant\n"


@pytest.mark.slow
@pytest.mark.parametrize("messages", CONVERSATIONS, ids=["user+assistant", "system+user"])
def test_chat_template_matches_transformers(tokenizer, hf_smollm2, messages):
  _, hf = hf_smollm2
  text = tokenizer.apply_chat_template(messages)
  assert text == hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
  assert text.endswith("<|im_start|>assistant\n")
  assert not tokenizer.apply_chat_template(messages, add_generation_prompt=False).endswith(
      "assistant\n")


def test_saved_tokenizer_loads_in_transformers(tokenizer, tmp_path):
  transformers = pytest.importorskip("transformers")
  tokenizer.encode_batch(["truncation must not be saved"], max_length=4)
  tokenizer.save(tmp_path)
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  for text in TEXTS:
    assert hf(text)["input_ids"] == tokenizer.encode(text), text
  assert hf.apply_chat_template(CONVERSATIONS[1], tokenize=False, add_generation_prompt=True) == (
      tokenizer.apply_chat_template(CONVERSATIONS[1]))
  assert (hf.bos_token, hf.eos_token) == ("<|im_start|>", "<|im_end|>")


# ------------------------------------- qwen2 and gpt2, on tiny random files --


def _write_tiny_lm(path, arch, tensors, hidden, heads, kv_heads, ffn, context):
  """A GGUF in llama.cpp's names and layouts, with the metadata transformers reads.

  `tensors` maps names to float32 arrays, or to (uint8 block bytes, GGMLQuantizationType)
  pairs written as they are (rows of whole blocks).
  """
  meta = {"add_block_count": 2, "add_context_length": context, "add_embedding_length": hidden,
          "add_feed_forward_length": ffn, "add_head_count": heads}
  if arch == "gpt2":
    meta["add_layer_norm_eps"] = 1e-5
  else:
    meta.update(add_head_count_kv=kv_heads, add_layer_norm_rms_eps=1e-6,
                add_rope_freq_base=10000.0)
  embd = tensors["token_embd.weight"]
  vocab = (embd[0] if isinstance(embd, tuple) else embd).shape[0]
  gguf_files.write(path, arch, tensors, meta, vocab)


def _tiny_tensors(arch, rng, hidden=64, heads=4, kv_heads=2, ffn=96, vocab=100, context=1024):
  def r(*shape):
    return rng.standard_normal(shape).astype(np.float32)
  hd = hidden // heads
  if arch == "qwen2":  # q/k/v biases; separate lm_head
    t = {"token_embd.weight": r(vocab, hidden), "output_norm.weight": r(hidden),
         "output.weight": r(vocab, hidden)}
    for i in range(2):
      b = f"blk.{i}."
      t.update({b + "attn_norm.weight": r(hidden), b + "attn_q.weight": r(heads * hd, hidden),
                b + "attn_q.bias": r(heads * hd), b + "attn_k.weight": r(kv_heads * hd, hidden),
                b + "attn_k.bias": r(kv_heads * hd), b + "attn_v.weight": r(kv_heads * hd, hidden),
                b + "attn_v.bias": r(kv_heads * hd),
                b + "attn_output.weight": r(hidden, heads * hd),
                b + "ffn_norm.weight": r(hidden), b + "ffn_gate.weight": r(ffn, hidden),
                b + "ffn_up.weight": r(ffn, hidden), b + "ffn_down.weight": r(hidden, ffn)})
    return t, dict(hidden=hidden, heads=heads, kv_heads=kv_heads, ffn=ffn, context=64)
  # gpt2: llama.cpp writes the tied embedding twice, as token_embd and output.
  ffn = 4 * hidden
  t = {"token_embd.weight": r(vocab, hidden), "position_embd.weight": r(context, hidden),
       "output_norm.weight": r(hidden), "output_norm.bias": r(hidden)}
  t["output.weight"] = t["token_embd.weight"].copy()
  for i in range(2):
    b = f"blk.{i}."
    for norm in ("attn_norm", "ffn_norm"):
      t.update({b + norm + ".weight": r(hidden), b + norm + ".bias": r(hidden)})
    for name, (out, inp) in {"attn_qkv": (3 * hidden, hidden), "attn_output": (hidden, hidden),
                             "ffn_up": (ffn, hidden), "ffn_down": (hidden, ffn)}.items():
      t.update({b + name + ".weight": r(out, inp), b + name + ".bias": r(out)})
  # transformers reads GPT-2's context as n_ctx, not n_positions (default 1024).
  return t, dict(hidden=hidden, heads=heads, kv_heads=None, ffn=ffn, context=context)


@pytest.mark.parametrize("arch", ["qwen2", "gpt2"])
def test_tiny_arch_matches_transformers(arch, tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  tensors, dims = _tiny_tensors(arch, np.random.default_rng(1))
  path = tmp_path / f"{arch}.gguf"
  _write_tiny_lm(path, arch, tensors, **dims)
  ours = gguf_io.read_gguf(path)
  model = transformers.AutoModelForCausalLM.from_pretrained(
      str(tmp_path), gguf_file=path.name, dtype=torch.float32)
  theirs = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  if arch == "gpt2":
    assert ours.hf_config["tie_word_embeddings"] and "lm_head.weight" not in ours.tensors
    theirs.pop("lm_head.weight")
    assert ours.tensors["transformer.h.0.attn.c_attn.weight"].shape == (64, 192)  # Conv1D [in, out]
  else:
    assert not ours.hf_config["tie_word_embeddings"]
  assert sorted(ours.tensors) == sorted(theirs)
  for name, w in ours.tensors.items():
    np.testing.assert_array_equal(w, theirs[name], err_msg=name)
  assert ours.hf_config["model_type"] == model.config.model_type == arch


# -------------------------------------------------------------- bad input ---


def _tiny_gguf(path, tensor_type, arch="llama"):
  """A GGUF whose only tensor, token_embd.weight, has the given raw type."""
  w = gguf.GGUFWriter(str(path), arch)
  block_bytes = gguf.GGML_QUANT_SIZES[tensor_type][1]
  raw = np.zeros((4, block_bytes), np.uint8)  # 4 rows of one block each (shape in bytes)
  w.add_tensor("token_embd.weight", raw, raw_dtype=tensor_type)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return path


def test_unknown_architecture_is_named(tmp_path):
  path = _tiny_gguf(tmp_path / "mamba.gguf", gguf.GGMLQuantizationType.F32, arch="mamba")
  with pytest.raises(CheckpointError, match=f"{path}.*architecture 'mamba'"):
    gguf_io.read_gguf(path)


def test_truncated_file_is_named(smollm2_gguf, tmp_path):
  cut = tmp_path / "half.gguf"
  with open(smollm2_gguf, "rb") as src, open(cut, "wb") as dst:
    dst.write(src.read(os.path.getsize(smollm2_gguf) // 2))
  with pytest.raises(CheckpointError, match=f"{cut}.*truncated"):
    gguf_io.read_gguf(cut)


def test_header_cut_short_is_named(smollm2_gguf, tmp_path):
  cut = tmp_path / "header.gguf"
  with open(smollm2_gguf, "rb") as src, open(cut, "wb") as dst:
    dst.write(src.read(100_000))  # inside the tokenizer metadata
  with pytest.raises(CheckpointError, match=str(cut)):
    gguf_io.read_gguf(cut)


@pytest.mark.parametrize("content", [b"", b"not a gguf file at all",
                                     b"GGUF" + bytes(range(256)) * 8])
def test_garbage_is_named(tmp_path, content):
  path = tmp_path / "bad.gguf"
  path.write_bytes(content)
  with pytest.raises(CheckpointError, match=str(path)):
    gguf_io.read_gguf(path)


def test_missing_file_is_named(tmp_path):
  with pytest.raises(CheckpointError, match="no such GGUF file"):
    gguf_io.read_gguf(tmp_path / "absent.gguf")


def test_unsupported_tokenizer_model_is_refused():
  with pytest.raises(FjftError, match="'t5'.*not supported"):
    Tokenizer.from_gguf({"tokenizer.ggml.model": "t5", "tokenizer.ggml.tokens": ["a"]}, None)


def test_sentencepiece_without_scores_or_merges_is_refused():
  with pytest.raises(FjftError, match="tokenizer.ggml.scores"):
    Tokenizer.from_gguf({"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": ["a"]}, None)


# ------------------------- a sentencepiece ('llama') tokenizer, tiny file ---

SP_TEXTS = [
    "Hello world",
    "the cat and the world on the mat",
    " leading space",
    "   three leading spaces and trailing  ",
    "line one\nline two\n\n\ttabbed\r\n",  # no pieces for \n \t \r: byte fallback
    "Héllo, wörld! 漢字 😀",  # é is a piece; ö, 漢, 😀 are bytes
    "helloello thethe",
    "<s>the</s> and <unk>",  # special tokens in the text stay whole
    "<|user|>hi<|end|>",
    "",
]

# Pieces a BPE training run would have produced, best (most frequent) first;
# each is reachable by joining two shorter pieces.
_SP_MERGED = ["\u2581t", "he", "\u2581the", "\u2581a", "in", "ing", "\u2581w", "or",
              "\u2581wor", "ld", "\u2581world", "ll", "llo", "\u2581H", "\u2581He",
              "\u2581Hello", "er", "\u2581s", "an", "and", "\u2581and", "\u2581\u2581",
              "\u2581\u2581\u2581\u2581", "at", "\u2581c", "\u2581cat", "\u2581\u00e9",
              "on", "\u2581on", "\u2581o", "\u2581th", "el", "\u2581hel", "ello", "\u2581m"]
_SP_CHARS = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-:"
                 "\u00e9\u2581")


def _write_sentencepiece_lm(path, **flags):
  """A tiny llama GGUF whose tokenizer is sentencepiece-style, as Llama 2's files are.

  Token types as llama.cpp writes them: <unk> UNKNOWN (2), <s> </s> CONTROL (3),
  <0x00>..<0xFF> BYTE (6), pieces NORMAL (1); plus one USER_DEFINED (4) and one
  extra CONTROL token. Scores rank merged pieces above single characters.
  """
  tokens, scores, types = ["<unk>", "<s>", "</s>"], [0.0] * 3, [2, 3, 3]
  tokens += [f"<0x{b:02X}>" for b in range(256)]
  scores += [0.0] * 256
  types += [6] * 256
  tokens += _SP_MERGED + _SP_CHARS + ["<|user|>", "<|end|>"]
  scores += [-float(i) for i in range(len(_SP_MERGED))]
  scores += [-1000.0 - i for i in range(len(_SP_CHARS))] + [0.0, 0.0]
  types += [1] * (len(_SP_MERGED) + len(_SP_CHARS)) + [4, 3]
  assert len(set(tokens)) == len(tokens)
  hidden = 16
  w = gguf.GGUFWriter(str(path), "llama")
  w.add_block_count(1)
  w.add_context_length(64)
  w.add_embedding_length(hidden)
  w.add_feed_forward_length(32)
  w.add_head_count(2)
  w.add_head_count_kv(2)
  w.add_layer_norm_rms_eps(1e-6)
  w.add_rope_freq_base(10000.0)
  w.add_tokenizer_model("llama")
  w.add_token_list(tokens)
  w.add_token_scores(scores)
  w.add_token_types(types)
  w.add_bos_token_id(1)
  w.add_eos_token_id(2)
  w.add_unk_token_id(0)
  if "add_bos" in flags:
    w.add_add_bos_token(flags["add_bos"])
  if "add_eos" in flags:
    w.add_add_eos_token(flags["add_eos"])
  if "add_space_prefix" in flags:
    w.add_add_space_prefix(flags["add_space_prefix"])
  w.add_tensor("token_embd.weight", np.zeros((len(tokens), hidden), np.float32))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return path


def _both_sentencepiece(folder, **flags):
  """(fjft's, transformers') tokenizer of a tiny sentencepiece GGUF with these flags."""
  transformers = pytest.importorskip("transformers")
  path = _write_sentencepiece_lm(folder / "sp.gguf", **flags)
  g = gguf_io.read_gguf(path)
  ours = Tokenizer.from_gguf(g.tokenizer_meta, g.chat_template)
  return ours, transformers.AutoTokenizer.from_pretrained(str(folder), gguf_file=path.name)


@pytest.fixture(scope="module")
def sentencepiece(tmp_path_factory):
  # No add_bos flag: like older Llama 2 files, which llama.cpp reads as "add BOS".
  return _both_sentencepiece(tmp_path_factory.mktemp("sp"))


def _assert_same_tokenization(ours, hf):
  for text in SP_TEXTS:
    for with_special in (True, False):
      ids = ours.encode(text, add_special_tokens=with_special)
      assert ids == hf(text, add_special_tokens=with_special)["input_ids"], (text, with_special)
      for skip in (True, False):
        assert ours.decode(ids, skip_special_tokens=skip) == hf.decode(
            ids, skip_special_tokens=skip), (text, with_special, skip)
    assert ours.encode_batch([text], max_length=512) == [hf(text)["input_ids"]], text


def test_sentencepiece_matches_transformers(sentencepiece):
  ours, hf = sentencepiece
  _assert_same_tokenization(ours, hf)
  assert ours.bos_id == hf.bos_token_id == 1
  assert ours.eos_id == hf.eos_token_id == 2
  assert ours.pad_id == 2  # the file names no padding token: EOS serves
  assert ours.vocab_size == len(hf)


def test_sentencepiece_pieces(sentencepiece):
  ours, hf = sentencepiece
  pieces = lambda ids: hf.convert_ids_to_tokens(ids)  # noqa: E731
  assert pieces(ours.encode("Hello world")) == ["<s>", "\u2581Hello", "\u2581world"]
  assert pieces(ours.encode("a\nb", add_special_tokens=False)) == ["\u2581a", "<0x0A>", "b"]
  assert pieces(ours.encode("\u6f22", add_special_tokens=False)) == [
      "\u2581", "<0xE6>", "<0xBC>", "<0xA2>"]
  assert ours.encode("") == [1]
  # As in transformers, a text's own leading space serves as the "\u2581" prefix,
  # so decoding drops it (llama.cpp would write "\u2581\u2581leading").
  assert pieces(ours.encode(" leading", add_special_tokens=False))[0] == "\u2581"
  assert ours.decode(ours.encode(" leading space")) == "leading space"
  # Merges recovered from the scores are transformers' own, rule for rule.
  merges = lambda tok: json.loads(tok.to_str())["model"]["merges"]  # noqa: E731
  assert merges(ours._tok) == merges(hf.backend_tokenizer)


def test_sentencepiece_flags_match_transformers(tmp_path):
  ours, hf = _both_sentencepiece(tmp_path, add_bos=False, add_eos=True)
  _assert_same_tokenization(ours, hf)
  assert ours.encode("Hello world")[-1] == 2 and ours.encode("Hello world")[0] != 1


def test_sentencepiece_without_space_prefix(tmp_path):
  # llama.cpp honours add_space_prefix = false; transformers ignores it.
  path = _write_sentencepiece_lm(tmp_path / "sp.gguf", add_space_prefix=False)
  meta = gguf_io.read_gguf(path).tokenizer_meta
  ours = Tokenizer.from_gguf(meta, None)
  ids = ours.encode("the world", add_special_tokens=False)
  assert ours._tok.id_to_token(ids[0]) == "t"
  assert ours.decode(ids) == "the world"


def test_saved_sentencepiece_loads_in_transformers(sentencepiece, tmp_path):
  transformers = pytest.importorskip("transformers")
  ours, _ = sentencepiece
  ours.save(tmp_path)
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  _assert_same_tokenization(ours, hf)
