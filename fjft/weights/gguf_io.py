"""Reads GGUF files (llama.cpp's format) as Hugging Face-named float32 tensors.

The `gguf` package's GGUFReader parses the file structure (metadata, tensor
infos, raw bytes); dequantisation and the mapping to Hugging Face names,
layouts and config fields are done here, so that what a GGUF holds can be
loaded by the same code as an HF safetensors checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fjft.errors import CheckpointError

_MAGIC = b"GGUF"


@dataclasses.dataclass
class GGUFModel:
  """A GGUF checkpoint in Hugging Face terms.

  Attributes:
    arch: GGUF general.architecture ("llama", "qwen2", "gpt2", ...).
    hf_config: a config.json-style dict for the HF model class.
    tensors: HF name -> float32 array in HF layout (torch Linear [out, in];
      HF Conv1D [in, out] for gpt2).
    tokenizer_meta: the tokenizer.ggml.* metadata, keys as in the file.
    chat_template: tokenizer.chat_template, or None.
  """
  arch: str
  hf_config: dict[str, Any]
  tensors: dict[str, np.ndarray]
  tokenizer_meta: dict[str, Any]
  chat_template: str | None


# ------------------------------------------------------------ dequantise ----
#
# Block layouts per the GGUF spec; each quantised block holds 32 consecutive
# elements along the fastest-varying dimension:
#   Q8_0: fp16 scale d, 32 int8 q            -> q * d
#   Q4_0: fp16 scale d, 16 bytes of nibbles  -> (q - 8) * d
#   Q4_1: fp16 scale d, fp16 min m, 16 bytes -> q * d + m
# In the 4-bit types byte j holds element j in its low nibble and element
# j + 16 in its high nibble.

# Type name -> (elements per block, bytes per block).
_BLOCKS: dict[str, tuple[int, int]] = {
    "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2),
    "Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20),
}


def _fp16_column(blocks: np.ndarray, start: int) -> np.ndarray:
  """The fp16 at byte `start` of each block, as an (n_blocks, 1) float32 column."""
  return np.ascontiguousarray(blocks[:, start:start + 2]).view(np.float16).astype(np.float32)


def _nibbles(packed: np.ndarray) -> np.ndarray:
  """(n_blocks, 16) bytes -> (n_blocks, 32) values 0..15 in element order."""
  return np.concatenate([packed & 0x0F, packed >> 4], axis=1)


def _q8_0(raw: np.ndarray) -> np.ndarray:
  blocks = raw.reshape(-1, 34)
  return _fp16_column(blocks, 0) * blocks[:, 2:].view(np.int8).astype(np.float32)


def _q4_0(raw: np.ndarray) -> np.ndarray:
  blocks = raw.reshape(-1, 18)
  q = _nibbles(blocks[:, 2:]).astype(np.float32) - np.float32(8)
  return _fp16_column(blocks, 0) * q


def _q4_1(raw: np.ndarray) -> np.ndarray:
  blocks = raw.reshape(-1, 20)
  q = _nibbles(blocks[:, 4:]).astype(np.float32)
  return _fp16_column(blocks, 0) * q + _fp16_column(blocks, 2)


_DEQUANTISERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "F32": lambda raw: raw.view(np.float32).copy(),
    "F16": lambda raw: raw.view(np.float16).astype(np.float32),
    # bfloat16 is the top half of a float32's bits.
    "BF16": lambda raw: (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32),
    "Q8_0": _q8_0,
    "Q4_0": _q4_0,
    "Q4_1": _q4_1,
}

SUPPORTED_TYPES: tuple[str, ...] = tuple(_DEQUANTISERS)


def n_bytes(type_name: str, n_elements: int) -> int:
  """Bytes that n_elements (a whole number of blocks) of a supported type take."""
  per_block, block_bytes = _BLOCKS[type_name]
  return n_elements // per_block * block_bytes


def dequantize(raw: np.ndarray, type_name: str, shape: tuple[int, ...]) -> np.ndarray:
  """Decodes a tensor's little-endian bytes to float32 of numpy `shape`.

  Args:
    raw: exactly the tensor's bytes (uint8; n_bytes(type_name, prod(shape))).
    type_name: one of SUPPORTED_TYPES (KeyError otherwise).
    shape: numpy order, slowest-varying dimension first.
  """
  flat = _DEQUANTISERS[type_name](np.asarray(raw, dtype=np.uint8).reshape(-1))
  return flat.reshape(shape)


# ----------------------------------------------------------- tensor names ---

# GGUF name -> HF name, for names outside the blocks; then, inside block i,
# GGUF part -> HF part (".weight" / ".bias" are carried over).
_LLAMA_TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm",
              "output": "lm_head"}
_LLAMA_BLOCK = ("model.layers.{}.", {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"})
_GPT2_TOP = {"token_embd": "transformer.wte", "position_embd": "transformer.wpe",
             "output_norm": "transformer.ln_f", "output": "lm_head"}
_GPT2_BLOCK = ("transformer.h.{}.", {
    "attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj",
    "ffn_norm": "ln_2", "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"})
# llama.cpp's converter stores these GPT-2 weights transposed from HF's Conv1D.
_GPT2_CONV1D = ("attn_qkv", "attn_output", "ffn_up", "ffn_down")

_BLOCK_NAME = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")
_TOP_NAME = re.compile(r"(\w+)\.(weight|bias)")


@dataclasses.dataclass(frozen=True)
class _Family:
  model_type: str
  top: dict[str, str]
  block: tuple[str, dict[str, str]]
  # Whether llama.cpp permuted Q/K rows for its interleaved RoPE ("normal"
  # rope); architectures on NEOX rope (qwen2) are stored as in HF.
  rope_permuted: bool


_FAMILIES: dict[str, _Family] = {
    "llama": _Family("llama", _LLAMA_TOP, _LLAMA_BLOCK, True),
    "mistral": _Family("mistral", _LLAMA_TOP, _LLAMA_BLOCK, True),
    "qwen2": _Family("qwen2", _LLAMA_TOP, _LLAMA_BLOCK, False),
    "gpt2": _Family("gpt2", _GPT2_TOP, _GPT2_BLOCK, False),
}


def _hf_name(family: _Family, name: str) -> tuple[str, str] | None:
  """(HF name, GGUF part) of a GGUF tensor name, or None if it has no HF twin."""
  if m := _BLOCK_NAME.fullmatch(name):
    prefix, parts = family.block
    hf = parts.get(m[2])
    return None if hf is None else (f"{prefix.format(m[1])}{hf}.{m[3]}", m[2])
  if m := _TOP_NAME.fullmatch(name):
    hf = family.top.get(m[1])
    return None if hf is None else (f"{hf}.{m[2]}", m[1])
  return None


def _unpermute_rope(w: np.ndarray, n_heads: int) -> np.ndarray:
  """Undoes llama.cpp's Q/K row permutation (HF's rotate-half -> interleaved).

  llama.cpp orders each head's rows as pairs (i, i + head_dim/2) side by side;
  HF keeps the two halves apart. Works for weights [out, in] and biases [out].
  """
  half = w.shape[0] // n_heads // 2
  return w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# --------------------------------------------------------------- metadata ---


class _Meta:
  """Metadata lookups whose failures name the file and the key."""

  def __init__(self, path: Path, values: dict[str, Any]):
    self.path, self.values = path, values

  def get(self, key: str, default: Any = None) -> Any:
    return self.values.get(key, default)

  def need(self, key: str) -> Any:
    if key not in self.values:
      raise CheckpointError(f"{self.path}: GGUF metadata lacks {key!r}")
    return self.values[key]

  def scalar(self, key: str, default: Any = None) -> Any:
    """A value that must be one number (some files give per-layer arrays)."""
    v = self.need(key) if default is None else self.values.get(key, default)
    if isinstance(v, list):
      if not v or any(x != v[0] for x in v):
        raise CheckpointError(f"{self.path}: GGUF metadata {key!r} varies per layer"
                              f" ({v[:8]}...), which fjft does not support")
      v = v[0]
    return v


def _f32(v: Any) -> float:
  """A float32 metadata value as the shortest decimal that rounds to it.

  GGUF stores 1e-5 as float32 9.99999974e-06; configs read better (and match
  the original config.json) with the decimal the model was made with.
  """
  return float(str(np.float32(v)))


def _rope_scaling(meta: _Meta, arch: str) -> dict[str, Any] | None:
  kind = meta.get(f"{arch}.rope.scaling.type")
  if kind in (None, "none"):
    return None
  scaling: dict[str, Any] = {"rope_type": kind,
                             "factor": _f32(meta.need(f"{arch}.rope.scaling.factor"))}
  original = meta.get(f"{arch}.rope.scaling.original_context_length")
  if original is not None:
    scaling["original_max_position_embeddings"] = int(original)
  return scaling


def _special_ids(meta: _Meta) -> dict[str, int]:
  out = {}
  for hf, key in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                  ("pad_token_id", "padding_token_id")):
    v = meta.get(f"tokenizer.ggml.{key}")
    if v is not None:
      out[hf] = int(v)
  return out


def _llama_config(meta: _Meta, arch: str, family: _Family, vocab_size: int,
                  tied: bool) -> dict[str, Any]:
  hidden = int(meta.scalar(f"{arch}.embedding_length"))
  heads = int(meta.scalar(f"{arch}.attention.head_count"))
  kv_heads = int(meta.scalar(f"{arch}.attention.head_count_kv", heads))
  cfg = {
      "model_type": family.model_type,
      "vocab_size": vocab_size,
      "hidden_size": hidden,
      "intermediate_size": int(meta.scalar(f"{arch}.feed_forward_length")),
      "num_hidden_layers": int(meta.scalar(f"{arch}.block_count")),
      "num_attention_heads": heads,
      "num_key_value_heads": kv_heads,
      "head_dim": int(meta.scalar(f"{arch}.attention.key_length", hidden // heads)),
      "rms_norm_eps": _f32(meta.scalar(f"{arch}.attention.layer_norm_rms_epsilon")),
      "rope_theta": _f32(meta.scalar(f"{arch}.rope.freq_base", 10000.0)),
      "max_position_embeddings": int(meta.scalar(f"{arch}.context_length")),
      "tie_word_embeddings": tied,
      "hidden_act": "silu",
  }
  if (scaling := _rope_scaling(meta, arch)) is not None:
    cfg["rope_scaling"] = scaling
  return cfg


def _gpt2_config(meta: _Meta, arch: str, vocab_size: int, tied: bool) -> dict[str, Any]:
  hidden = int(meta.scalar(f"{arch}.embedding_length"))
  return {
      "model_type": "gpt2",
      "vocab_size": vocab_size,
      "n_embd": hidden,
      "n_inner": int(meta.scalar(f"{arch}.feed_forward_length", 4 * hidden)),
      "n_layer": int(meta.scalar(f"{arch}.block_count")),
      "n_head": int(meta.scalar(f"{arch}.attention.head_count")),
      "n_positions": int(meta.scalar(f"{arch}.context_length")),
      "layer_norm_epsilon": _f32(meta.scalar(f"{arch}.attention.layer_norm_epsilon")),
      "activation_function": "gelu_new",
      "tie_word_embeddings": tied,
  }


# ------------------------------------------------------------------- file ---


def _open(path: Path):
  """GGUFReader over `path`, with every parse failure as a CheckpointError."""
  size = path.stat().st_size
  with path.open("rb") as f:
    head = f.read(4)
  if head != _MAGIC:
    raise CheckpointError(f"{path}: not a GGUF file (it starts with {head!r}, not"
                          f" {_MAGIC!r}; {size} bytes)")
  try:
    from gguf import GGUFReader
  except ImportError as e:
    raise CheckpointError(f"{path}: reading GGUF files needs the 'gguf' package"
                          " (pip install gguf)") from e
  try:
    reader = GGUFReader(path)
  except Exception as e:  # The reader raises whatever numpy does on bad bytes.
    raise CheckpointError(f"{path}: corrupt or truncated GGUF file ({size} bytes);"
                          f" the gguf reader failed with {type(e).__name__}: {e}") from e
  if reader.endianess.name != "LITTLE":
    raise CheckpointError(f"{path}: a big-endian GGUF file; only little-endian"
                          " files are supported")
  return reader


def _metadata(path: Path, reader) -> dict[str, Any]:
  values = {}
  for key, field in reader.fields.items():
    if key.startswith("GGUF."):
      continue
    try:
      values[key] = field.contents()
    except Exception as e:  # e.g. a string that is not UTF-8.
      raise CheckpointError(f"{path}: corrupt GGUF metadata {key!r}:"
                            f" {type(e).__name__}: {e}") from e
  return values


def read_gguf(path: str | os.PathLike[str]) -> GGUFModel:
  """Reads a GGUF decoder LM: config, float32 HF tensors, tokenizer metadata.

  Supports architectures llama (also SmolLM), mistral, qwen2 and gpt2, and
  tensor types SUPPORTED_TYPES.

  Raises:
    CheckpointError: naming the file, when it is missing, not GGUF, truncated
      or corrupt, of another architecture, or holds a tensor of another type
      (naming the tensor) or a tensor fjft cannot place.
  """
  path = Path(path)
  if not path.is_file():
    raise CheckpointError(f"{path}: no such GGUF file")
  reader = _open(path)
  meta = _Meta(path, _metadata(path, reader))
  arch = meta.need("general.architecture")
  family = _FAMILIES.get(arch)
  if family is None:
    raise CheckpointError(f"{path}: GGUF architecture {arch!r} is not supported;"
                          f" supported: {sorted(_FAMILIES)}")

  names = {t.name for t in reader.tensors}
  if "token_embd.weight" not in names:
    raise CheckpointError(f"{path}: no token_embd.weight tensor")
  if "rope_freqs.weight" in names:
    # llama.cpp bakes Llama-3.1-style RoPE scaling into this tensor and drops
    # the parameters HF needs; using the model without it would be wrong.
    raise CheckpointError(f"{path}: has a rope_freqs tensor (Llama 3.1-style RoPE"
                          " scaling), which fjft cannot map to an HF config yet")
  tensors = _read_tensors(path, reader, family)
  vocab_size = tensors[family.top["token_embd"] + ".weight"].shape[0]

  tied = "lm_head.weight" not in tensors
  if family.model_type == "gpt2" and not tied:
    # llama.cpp writes GPT-2's tied embedding twice; HF GPT-2 is always tied.
    if np.array_equal(tensors["lm_head.weight"], tensors["transformer.wte.weight"]):
      del tensors["lm_head.weight"]
      tied = True
    else:
      raise CheckpointError(f"{path}: a GPT-2 whose output.weight differs from"
                            " token_embd.weight (untied), which HF GPT-2 cannot hold")
  if family.model_type == "gpt2":
    hf_config = _gpt2_config(meta, arch, vocab_size, tied)
  else:
    hf_config = _llama_config(meta, arch, family, vocab_size, tied)
  hf_config.update(_special_ids(meta))

  if family.rope_permuted:
    heads = hf_config["num_attention_heads"]
    kv_heads = hf_config["num_key_value_heads"]
    for name in list(tensors):
      if ".self_attn.q_proj." in name:
        tensors[name] = _unpermute_rope(tensors[name], heads)
      elif ".self_attn.k_proj." in name:
        tensors[name] = _unpermute_rope(tensors[name], kv_heads)

  tokenizer_meta = {k: v for k, v in meta.values.items() if k.startswith("tokenizer.ggml.")}
  template = meta.get("tokenizer.chat_template")
  return GGUFModel(arch=arch, hf_config=hf_config, tensors=tensors,
                   tokenizer_meta=tokenizer_meta,
                   chat_template=template if isinstance(template, str) else None)


def _read_tensors(path: Path, reader, family: _Family) -> dict[str, np.ndarray]:
  size = len(reader.data)
  out: dict[str, np.ndarray] = {}
  for t in reader.tensors:
    type_name = t.tensor_type.name
    if type_name not in _DEQUANTISERS:
      raise CheckpointError(
          f"{path}: tensor {t.name!r} has type {type_name}, which fjft cannot"
          f" dequantise; supported: {list(SUPPORTED_TYPES)} (re-quantise the model"
          " to one of these, e.g. with llama.cpp's llama-quantize --allow-requantize)")
    mapped = _hf_name(family, t.name)
    if mapped is None:
      raise CheckpointError(f"{path}: tensor {t.name!r} has no place in an HF"
                            f" {family.model_type} model")
    hf, part = mapped
    # GGUF lists dims fastest-varying first; numpy wants them the other way.
    shape = tuple(int(d) for d in reversed(t.shape))
    count = int(np.prod(shape))
    per_block = _BLOCKS[type_name][0]
    if shape and shape[-1] % per_block:
      raise CheckpointError(f"{path}: tensor {t.name!r} of type {type_name} has a"
                            f" row of {shape[-1]} elements, not a multiple of the"
                            f" {per_block}-element block")
    nbytes = n_bytes(type_name, count)
    start = int(t.data_offset)
    if start + nbytes > size:
      raise CheckpointError(
          f"{path}: truncated GGUF file: tensor {t.name!r} needs bytes"
          f" {start}..{start + nbytes} but the file has {size}")
    w = dequantize(reader.data[start:start + nbytes], type_name, shape)
    if family.model_type == "gpt2" and part in _GPT2_CONV1D and w.ndim == 2:
      w = np.ascontiguousarray(w.T)
    if hf in out:
      raise CheckpointError(f"{path}: two tensors map to {hf!r}")
    out[hf] = w
  return out
