"""Chat-template train/serve parity, family by family, with the families' own templates.

For each family's chat template (read from the published archives that carry them: the
trl and axolotl wheels and the llama-cpp-python sdist, which the first test to need them
downloads from the package index with pip, into FJFT_TEMPLATE_ARCHIVES; nothing of them
is installed or imported), on a
tokenizer of the family's kind (byte-level BPE or sentencepiece-style, trained here on real
text) that carries the family's special tokens:
  - the ids fjft trains on are transformers' apply_chat_template(tokenize=True), for single
    and multi-turn chats, with and without a system turn;
  - the ids fjft serves a prompt with (generation prompt) are transformers' too, and are
    exactly the training ids before the reply: what the model learns to answer is what a
    server gives it;
  - the loss mask covers each reply and its end-of-turn tokens and nothing of the prompt;
    where trl publishes a training variant of the template ({% generation %} blocks), the
    mask is transformers' assistant mask of that variant, token for token;
  - a run's saved tokenizer carries the template it trained with.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tokenizers
from tokenizers import AddedToken, decoders, models, pre_tokenizers, trainers

from fjft.data import packing
from fjft.errors import DataError
from fjft.models.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")

ARCHIVES = Path(os.environ.get("FJFT_TEMPLATE_ARCHIVES",
                               "~/.cache/fjft/template-archives")).expanduser()
TRL = "trl-1.16.0-py3-none-any.whl", "trl/chat_templates/"
AXOLOTL = "axolotl-0.19.0-py3-none-any.whl", "axolotl/utils/chat_templates/templates/"
LLAMA_CPP = ("llama_cpp_python-0.3.36.tar.gz",
             "llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/")
# archive -> the pip download arguments that fetch it
DOWNLOADS = {TRL[0]: ["trl==1.16.0"], AXOLOTL[0]: ["axolotl==0.19.0"],
             LLAMA_CPP[0]: ["--no-binary", ":all:", "llama-cpp-python==0.3.36"]}

QWEN = dict(kind="bytelevel", cls="Qwen2Tokenizer",
            special=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            added=["<think>", "</think>", "<tool_call>", "</tool_call>"],
            roles={"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})
LLAMA3 = dict(kind="bytelevel", cls="PreTrainedTokenizerFast",
              special=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                       "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"],
              roles={"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})
GEMMA = dict(kind="sentencepiece-never", cls="GemmaTokenizer",
             special=["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
                      "<start_of_image>"],
             roles={"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
                    "unk_token": "<unk>"})
PHI3 = dict(kind="sentencepiece-first", cls="LlamaTokenizer",
            special=["<s>", "</s>", "<unk>", "<|endoftext|>", "<|system|>", "<|user|>",
                     "<|assistant|>", "<|end|>"],
            roles={"bos_token": "<s>", "eos_token": "<|endoftext|>",
                   "pad_token": "<|endoftext|>", "unk_token": "<unk>"})
PHI4 = dict(kind="bytelevel", cls="GPT2Tokenizer",
            special=["<|endoftext|>", "<|im_start|>", "<|im_sep|>", "<|im_end|>"],
            roles={"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})
MISTRAL = dict(kind="sentencepiece-first", cls="LlamaTokenizer", special=["<s>", "</s>", "<unk>"],
               roles={"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
SMOLLM3 = dict(kind="bytelevel", cls="PreTrainedTokenizerFast",
               special=["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"],
               added=["<think>", "</think>"],
               roles={"eos_token": "<|im_end|>", "pad_token": "<|im_end|>"})
GRANITE = dict(kind="bytelevel", cls="GPT2Tokenizer",
               special=["<|end_of_text|>", "<|start_of_role|>", "<|end_of_role|>",
                        "<|tool_call|>"],
               roles={"bos_token": "<|end_of_text|>", "eos_token": "<|end_of_text|>",
                      "pad_token": "<|end_of_text|>"})

# family: (archive, template file, tokenizer, trl training variant or None)
FAMILIES = {
    "qwen3": (TRL, "qwen3.jinja", QWEN, "qwen3_training.jinja"),
    # (its variant opens the block before the "\n" that ends the generation prompt, so it
    # trains that one prompt token too: compared for the blocks, not against the original)
    "qwen2.5": (TRL, "qwen2_5.jinja", QWEN, "qwen2_5_training.jinja"),
    "llama3.1": (TRL, "llama3_1.jinja", LLAMA3, None),
    "llama3.2": (TRL, "llama3_2.jinja", LLAMA3, None),
    "llama3.3": (LLAMA_CPP, "meta-llama-Llama-3.3-70B-Instruct.jinja", LLAMA3, None),
    "llama3": (TRL, "llama3.jinja", LLAMA3, "llama3_training.jinja"),
    "gemma": (TRL, "gemma.jinja", GEMMA, "gemma_training.jinja"),
    "gemma2": (LLAMA_CPP, "google-gemma-2-2b-it.jinja", GEMMA, None),
    "gemma3": (TRL, "gemma3.jinja", GEMMA, "gemma3_training.jinja"),
    "phi3": (TRL, "phi3.jinja", PHI3, "phi3_training.jinja"),
    "phi3.5": (TRL, "phi3_5.jinja", PHI3, "phi3_5_training.jinja"),
    "phi4": (AXOLOTL, "phi_4.jinja", PHI4, None),
    "mistral": (AXOLOTL, "mistral_v1.jinja", MISTRAL, None),
    "smollm3": (LLAMA_CPP, "HuggingFaceTB-SmolLM3-3B.jinja", SMOLLM3, None),
    "granite3.3": (LLAMA_CPP, "ibm-granite-granite-3.3-2B-Instruct.jinja", GRANITE, None),
    "granite4": (LLAMA_CPP, "ibm-granite-granite-4.0.jinja", GRANITE, None),
}

SYSTEM = {"role": "system", "content": "Eres el asistente de soporte de un banco."}
CHATS = {
    "one turn": [{"role": "user", "content": "My card was swallowed by the ATM."},
                 {"role": "assistant", "content": "I'm sorry! I have frozen the card."}],
    "multi-turn": [{"role": "user", "content": "¿Dónde está mi tarjeta?"},
                   {"role": "assistant", "content": "  Está bloqueada, por seguridad.\n"},
                   {"role": "user", "content": "Thanks. Can I get a new one?\n\nSoon?"},
                   {"role": "assistant", "content": "Yes: a new card ships within 3 days."}],
    "same reply twice": [{"role": "user", "content": "Is it blocked?"},
                         {"role": "assistant", "content": "Yes."},
                         {"role": "user", "content": "Really blocked?"},
                         {"role": "assistant", "content": "Yes."}],
}
CHATS["system, one turn"] = [SYSTEM, *CHATS["one turn"]]
CHATS["system, multi-turn"] = [SYSTEM, *CHATS["multi-turn"]]


@functools.cache
def _template(archive_and_dir, name: str) -> str:
  (file, folder) = archive_and_dir
  path = ARCHIVES / file
  if not path.is_file():
    got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                          "--dest", str(ARCHIVES), *DOWNLOADS[file]],
                         capture_output=True, text=True, timeout=600)
    if not path.is_file():
      pytest.skip(f"cannot download {file} from the package index: {got.stderr[-300:]}")
  if file.endswith(".whl"):
    with zipfile.ZipFile(path) as z:
      return z.read(folder + name).decode()
  with tarfile.open(path) as t:
    return t.extractfile(folder + name).read().decode()


def _corpus(shared) -> list[str]:
  lines = (shared / "tiny_shakespeare" / "input.txt").read_text().splitlines()[:6000]
  spa = (shared / "tatoeba_eng_spa").glob("*.spa")
  return lines + next(spa).read_text().splitlines()[:3000]


@functools.cache
def _base(kind: str, shared: Path) -> tokenizers.Tokenizer:
  """A BPE of the given kind trained on real English and Spanish text."""
  if kind == "bytelevel":   # Qwen, Llama 3, Phi-4, SmolLM, Granite, OLMo 2
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  else:                     # Gemma ("never": no prefix space), Llama 2 / Mistral / Phi-3
    tok = tokenizers.Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=1500, show_progress=False,
                                  special_tokens=["<unk>"] + [f"<0x{b:02X}>" for b in range(256)])
  tok.train_from_iterator(_corpus(shared), trainer)
  if kind != "bytelevel":
    scheme = kind.split("-")[1]
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme=scheme, split=False)
    tok.decoder = decoders.Metaspace(prepend_scheme=scheme, split=False)
  return tok


def _family_dir(family: str, tmp: Path, shared: Path, template: str | None = None) -> Path:
  archive, name, spec, _ = FAMILIES[family]
  tok = tokenizers.Tokenizer.from_str(_base(spec["kind"], shared).to_str())
  tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                          for t in spec["special"]])
  tok.add_tokens([AddedToken(t, special=False, normalized=False)
                  for t in spec.get("added", [])])
  out = tmp / family
  out.mkdir(parents=True, exist_ok=True)
  tok.save(str(out / "tokenizer.json"))
  (out / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": spec["cls"], "clean_up_tokenization_spaces": False,
       **spec["roles"]}))
  (out / "chat_template.jinja").write_text(template or _template(archive, name))
  return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  shared = Path(__file__).resolve().parents[2].parent / "shared" / "data"
  tmp = tmp_path_factory.mktemp("chat_families")
  return {f: _family_dir(f, tmp, shared) for f in FAMILIES}


def _hf_ids(hf, messages, **kw) -> list[int]:
  out = hf.apply_chat_template(messages, tokenize=True, **kw)
  return list(out["input_ids"] if hasattr(out, "keys") else out)


def _rejects(hf, messages) -> bool:
  import jinja2
  try:
    hf.apply_chat_template(messages, tokenize=False)
  except jinja2.exceptions.TemplateError:  # the template's raise_exception
    return True
  return False


def _special_ids(folder: Path) -> set[int]:
  added = json.loads((folder / "tokenizer.json").read_text())["added_tokens"]
  return {t["id"] for t in added if t["special"]}


def _replies(mask: np.ndarray) -> list[tuple[int, int]]:
  edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
  return list(zip(edges[::2], edges[1::2]))


@pytest.mark.parametrize("family", FAMILIES)
def test_training_and_serving_ids_are_transformers(family, folders):
  fjft_tok = Tokenizer.from_dir(folders[family])
  hf = transformers.AutoTokenizer.from_pretrained(str(folders[family]))
  special = _special_ids(folders[family])
  checked = 0
  for name, chat in CHATS.items():
    where = f"{family} / {name}"
    if _rejects(hf, chat):   # e.g. Gemma 1 has no system role: both refuse it
      with pytest.raises(DataError, match="chat template rejected"):
        packing.from_chat(fjft_tok, chat, where)
      continue
    ex = packing.from_chat(fjft_tok, chat, where)
    assert ex.ids.tolist() == _hf_ids(hf, chat), where
    replies = _replies(ex.loss_mask)
    turns = [i for i, m in enumerate(chat) if m["role"] == "assistant"]
    assert len(replies) == len(turns), where
    for (start, end), i in zip(replies, turns):
      # serve parity: the prompt a server builds for this turn is the training prefix
      prompt = _hf_ids(hf, chat[:i], add_generation_prompt=True)
      served = fjft_tok.encode(fjft_tok.apply_chat_template(chat[:i]), add_special_tokens=False)
      assert served == prompt, where
      if ex.ids[:len(prompt)].tolist() == prompt:   # templates that render earlier
        assert start == len(prompt), where          # turns unchanged (all but Qwen3's)
      reply = fjft_tok.decode(ex.ids[start:end], skip_special_tokens=False)
      assert chat[i]["content"].strip() in reply, where
      # the reply ends with the turn's end: a special token (then maybe newlines)
      last = max(t for t in range(start, end)
                 if fjft_tok.decode(ex.ids[t:t + 1], skip_special_tokens=False).strip())
      assert int(ex.ids[last]) in special, where
    prompt_text = fjft_tok.decode(ex.ids[~ex.loss_mask], skip_special_tokens=False)
    for m in chat:   # system and user turns are all prompt
      if m["role"] != "assistant":
        assert m["content"].strip()[:20] in prompt_text, where
    checked += 1
  assert checked >= 3


TRAINING_VARIANTS = [f for f, row in FAMILIES.items() if row[3]]
PROMPT_IN_BLOCK = ("qwen2.5",)


@pytest.mark.parametrize("family", TRAINING_VARIANTS)
def test_masks_equal_transformers_assistant_masks_of_the_training_variant(
    family, folders, tmp_path):
  archive, _, _, variant = FAMILIES[family]
  shared = Path(__file__).resolve().parents[2].parent / "shared" / "data"
  training = _template(archive, variant)
  hf = transformers.AutoTokenizer.from_pretrained(str(folders[family]))
  fjft_tok = Tokenizer.from_dir(folders[family])
  fjft_training = Tokenizer.from_dir(_family_dir(family, tmp_path, shared, training))
  compared = 0
  for name, chat in CHATS.items():
    if _rejects(hf, chat):
      continue
    theirs = hf.apply_chat_template(chat, chat_template=training, tokenize=True,
                                    return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = theirs["input_ids"], np.asarray(theirs["assistant_masks"], bool)
    # a template with {% generation %} blocks: fjft reads the blocks as transformers does
    own = packing.from_chat(fjft_training, chat, name)
    assert own.ids.tolist() == ids and (own.loss_mask == mask).all(), name
    # the original template (no blocks): the same mask wherever it renders the same ids
    ex = packing.from_chat(fjft_tok, chat, name)
    if ex.ids.tolist() == ids and family not in PROMPT_IN_BLOCK:
      assert (ex.loss_mask == mask).all(), (name, fjft_tok.decode(
          ex.ids[ex.loss_mask != mask], skip_special_tokens=False))
      compared += 1
  assert compared >= 2 or family in PROMPT_IN_BLOCK


def test_a_run_saves_the_template_it_trained_with(folders, tmp_path):
  base = Tokenizer.from_dir(folders["qwen3"])
  other = base.with_chat_template(_template(*FAMILIES["phi4"][:2]))
  other.save(tmp_path / "run_tokenizer")
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "run_tokenizer"))
  chat = CHATS["system, multi-turn"]
  assert hf.chat_template == other.chat_template != base.chat_template
  assert packing.from_chat(other, chat, "x").ids.tolist() == _hf_ids(hf, chat)
  assert Tokenizer.from_dir(tmp_path / "run_tokenizer").chat_template == other.chat_template
  # the source folder's tokenizer files are untouched
  assert Tokenizer.from_dir(folders["qwen3"]).chat_template == base.chat_template
