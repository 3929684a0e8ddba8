"""Reads GGUF files (llama.cpp's format) as Hugging Face-named float32 tensors.

The `gguf` package's GGUFReader parses the file structure (metadata, tensor
infos, raw bytes) and its dequantisers decode every tensor type they know
(fjft.weights.gguf_quant shapes the bytes for them); the mapping
to Hugging Face names, layouts and config fields is each family's GGUF layout
(fjft.models.family.GGUFLayout, e.g. fjft.models.llama.gguf), so that what a
GGUF holds loads through the same code as an HF safetensors checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from fjft.errors import CheckpointError
from fjft.weights.gguf_meta import Meta

__all__ = ["GGUFModel", "architecture", "read_gguf"]

_MAGIC = b"GGUF"

_BLOCK_NAME = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")
_TOP_NAME = re.compile(r"(\w+)\.(weight|bias)")


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


def _hf_name(layout, name: str) -> str | None:
  """The HF name of a GGUF tensor name, or None if it has no HF twin."""
  if m := _BLOCK_NAME.fullmatch(name):
    hf = layout.block.get(m[2])
    return None if hf is None else f"{layout.block_prefix.format(m[1])}{hf}.{m[3]}"
  if m := _TOP_NAME.fullmatch(name):
    hf = layout.top.get(m[1])
    return None if hf is None else f"{hf}.{m[2]}"
  return None


def _special_ids(meta: Meta) -> dict[str, int]:
  out = {}
  for hf, key in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                  ("pad_token_id", "padding_token_id")):
    v = meta.get(f"tokenizer.ggml.{key}")
    if v is not None:
      out[hf] = int(v)
  return out


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


def _layout(path: Path, meta: Meta):
  """(the family's GGUF layout, the HF model_type) of the file's architecture."""
  from fjft.models import registry  # the registry imports this module's users
  arch = meta.arch
  layout = registry.gguf_layout(arch)
  if layout is None:
    raise CheckpointError(f"{path}: GGUF architecture {arch!r} is not supported;"
                          f" supported: {registry.gguf_architectures()}")
  return layout, layout.archs[arch]


def architecture(path: str | os.PathLike[str]) -> str:
  """general.architecture of a GGUF file (its metadata only is parsed)."""
  path = Path(path)
  if not path.is_file():
    raise CheckpointError(f"{path}: no such GGUF file")
  reader = _open(path)
  return Meta(path, _metadata(path, reader)).arch


def read_gguf(path: str | os.PathLike[str]) -> GGUFModel:
  """Reads a GGUF decoder LM: config, float32 HF tensors, tokenizer metadata.

  Supports the architectures of the registered families' GGUF layouts (llama,
  also SmolLM; mistral, qwen2, qwen3, olmo2, phi3, gemma2, gemma3, gpt2) and every
  tensor type the installed gguf package dequantises
  (fjft.weights.gguf_quant.supported_types()).

  Raises:
    CheckpointError: naming the file, when it is missing, not GGUF, truncated
      or corrupt, of another architecture, or holds a tensor of another type
      (naming the tensor) or a tensor fjft cannot place.
  """
  path = Path(path)
  if not path.is_file():
    raise CheckpointError(f"{path}: no such GGUF file")
  reader = _open(path)
  meta = Meta(path, _metadata(path, reader))
  layout, model_type = _layout(path, meta)
  names = {t.name for t in reader.tensors}
  if "token_embd.weight" not in names:
    raise CheckpointError(f"{path}: no token_embd.weight tensor")
  if "rope_freqs.weight" in names:
    # llama.cpp bakes Llama-3.1-style RoPE scaling into this tensor and drops
    # the parameters HF needs; using the model without it would be wrong.
    raise CheckpointError(f"{path}: has a rope_freqs tensor (Llama 3.1-style RoPE"
                          " scaling), which fjft cannot map to an HF config yet")
  tensors = _read_tensors(path, reader, layout, model_type)
  hf_config = layout.to_hf(meta, model_type, tensors)
  hf_config.update(_special_ids(meta))
  tokenizer_meta = {k: v for k, v in meta.values.items() if k.startswith("tokenizer.ggml.")}
  template = meta.get("tokenizer.chat_template")
  return GGUFModel(arch=meta.arch, hf_config=hf_config, tensors=tensors,
                   tokenizer_meta=tokenizer_meta,
                   chat_template=template if isinstance(template, str) else None)


def _gguf_version() -> str:
  from importlib import metadata
  try:
    return metadata.version("gguf")
  except metadata.PackageNotFoundError:  # e.g. gguf-py from a llama.cpp checkout
    return "of unknown version"


def _read_tensors(path: Path, reader, layout, model_type: str) -> dict[str, np.ndarray]:
  # Imported here: _open has checked that the gguf package is installed.
  from fjft.weights.gguf_quant import block_elements, dequantize, n_bytes, supported_types
  size = len(reader.data)
  out: dict[str, np.ndarray] = {}
  for t in reader.tensors:
    type_name = t.tensor_type.name
    if type_name not in supported_types():
      raise CheckpointError(
          f"{path}: tensor {t.name!r} has type {type_name}, which the installed gguf"
          f" package ({_gguf_version()}) cannot dequantise; it can: {list(supported_types())}"
          " (upgrade gguf, or re-quantise the model to one of these, e.g. with"
          " llama.cpp's llama-quantize --allow-requantize)")
    hf = _hf_name(layout, t.name)
    if hf is None:
      raise CheckpointError(f"{path}: tensor {t.name!r} has no place in an HF"
                            f" {model_type} model")
    # GGUF lists dims fastest-varying first; numpy wants them the other way.
    shape = tuple(int(d) for d in reversed(t.shape))
    per_block = block_elements(type_name)
    if shape and shape[-1] % per_block:
      raise CheckpointError(f"{path}: tensor {t.name!r} of type {type_name} has a"
                            f" row of {shape[-1]} elements, not a multiple of the"
                            f" {per_block}-element block")
    nbytes = n_bytes(type_name, int(np.prod(shape)))
    start = int(t.data_offset)
    if start + nbytes > size:
      raise CheckpointError(
          f"{path}: truncated GGUF file: tensor {t.name!r} needs bytes"
          f" {start}..{start + nbytes} but the file has {size}")
    if hf in out:
      raise CheckpointError(f"{path}: two tensors map to {hf!r}")
    out[hf] = dequantize(reader.data[start:start + nbytes], type_name, shape)
  return out
