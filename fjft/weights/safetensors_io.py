"""Reads and writes safetensors checkpoints (single file or index-sharded).

Only the safetensors format is supported: it cannot execute code on load,
unlike pickle-based `.bin` checkpoints, which are refused on purpose.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import ml_dtypes
import numpy as np
import safetensors.numpy

from fjft.errors import CheckpointError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# The header is preceded by its length as a little-endian u64; anything larger
# than this is garbage rather than a real header (the reference loader caps it
# at 100 MB too).
_MAX_HEADER_BYTES = 100_000_000


def safetensors_files(path_or_dir: str | os.PathLike[str]) -> list[Path]:
  """Lists the safetensors files that make up a checkpoint.

  Args:
    path_or_dir: a `.safetensors` file, a `model.safetensors.index.json`, or a
      folder holding either `model.safetensors` or the index plus its shards.

  Returns:
    The files, in the order the index first names them.

  Raises:
    CheckpointError: nothing loadable is there, or the index is malformed.
  """
  path = Path(path_or_dir)
  if path.is_dir():
    if (path / SINGLE_FILE).is_file():
      return [path / SINGLE_FILE]
    if (path / INDEX_FILE).is_file():
      path = path / INDEX_FILE
    else:
      found = sorted(p.name for p in path.iterdir())[:20]
      hint = ""
      if any(n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in found):
        hint = (" (pickle checkpoints such as .bin are not loaded because"
                " they can run code; convert them to safetensors first)")
      raise CheckpointError(
          f"{path}: no {SINGLE_FILE} or {INDEX_FILE} in this folder; found"
          f" {found}{hint}")
  if not path.is_file():
    raise CheckpointError(f"{path}: no such checkpoint file")
  if path.name.endswith(".index.json"):
    try:
      weight_map = json.loads(path.read_text())["weight_map"]
      shards = list(dict.fromkeys(weight_map.values()))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
      raise CheckpointError(
          f"{path}: not a valid safetensors index (expected a JSON object"
          f" with a 'weight_map' of tensor name -> shard file): {e}") from e
    files = [path.parent / s for s in shards]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
      raise CheckpointError(f"{path}: names shard files that do not exist:"
                            f" {missing}")
    return files
  return [path]


def _check_layout(path: Path) -> tuple[dict, int]:
  """Verifies header and sizes so a truncated file gets a precise message.

  Returns:
    (the header: tensor name -> {"dtype", "shape", "data_offsets"}, the byte
    offset in the file where tensor data starts).
  """
  size = path.stat().st_size
  with path.open("rb") as f:
    prefix = f.read(8)
    if len(prefix) < 8:
      raise CheckpointError(
          f"{path}: not a safetensors file: it is {size} bytes, shorter than"
          " the 8-byte header length prefix (truncated or empty?)")
    (header_len,) = struct.unpack("<Q", prefix)
    if header_len > _MAX_HEADER_BYTES or 8 + header_len > size:
      raise CheckpointError(
          f"{path}: corrupt or truncated safetensors file: the header claims"
          f" {header_len} bytes but the file is only {size} bytes")
    raw = f.read(header_len)
  try:
    header = json.loads(raw)
    header.pop("__metadata__", None)
    ends = [int(v["data_offsets"][1]) for v in header.values()]
  except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
    raise CheckpointError(
        f"{path}: corrupt safetensors file: its header is not valid JSON"
        f" tensor metadata ({e})") from e
  data_len = size - 8 - header_len
  needed = max(ends, default=0)
  if needed > data_len:
    raise CheckpointError(
        f"{path}: truncated safetensors file: the header describes {needed}"
        f" bytes of tensor data but only {data_len} are present")
  return header, 8 + header_len


# safetensors dtype -> numpy dtype; the format is little-endian throughout.
_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}


def map_safetensors_file(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """Memory-maps one `.safetensors` file: name -> a read-only view of its bytes.

  Nothing is read until an array is used, and then only the pages it touches:
  a loader can cut one device's block out of a tensor without the whole
  checkpoint (or the whole tensor) ever being copied into memory.
  Written here rather than with safetensors' safe_open slices because the
  loader composes numpy views on these arrays (a transposed kernel, one part of
  a fused q/k/v tensor, layers stacked for scan) and cuts each device's block
  out of the view; safe_open slices index only the layout stored in the file.

  Raises:
    CheckpointError: naming the file (and the tensor), when it is missing,
      truncated or corrupt, or holds a dtype numpy cannot view.
  """
  path = Path(path)
  if not path.is_file():
    raise CheckpointError(f"{path}: no such checkpoint file")
  header, data_start = _check_layout(path)
  data = np.memmap(path, dtype=np.uint8, mode="r")
  out = {}
  for name, info in header.items():
    try:
      dtype, shape = info["dtype"], tuple(int(d) for d in info["shape"])
      start, end = (data_start + int(o) for o in info["data_offsets"])
    except (KeyError, TypeError, ValueError) as e:
      raise CheckpointError(f"{path}: corrupt safetensors header entry for tensor"
                            f" {name!r}: {info!r}") from e
    if dtype not in _DTYPES:
      raise CheckpointError(f"{path}: tensor {name!r} has dtype {dtype}, which fjft"
                            f" cannot read; readable: {sorted(_DTYPES)}")
    if end - start != math.prod(shape) * _DTYPES[dtype].itemsize:
      raise CheckpointError(f"{path}: corrupt safetensors file: tensor {name!r} of"
                            f" shape {shape} and dtype {dtype} spans {end - start}"
                            " bytes")
    out[name] = data[start:end].view(_DTYPES[dtype]).reshape(shape)
  return out


def read_safetensors_file(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """Reads one `.safetensors` file into numpy arrays."""
  path = Path(path)
  if not path.is_file():
    raise CheckpointError(f"{path}: no such checkpoint file")
  _check_layout(path)
  try:
    return safetensors.numpy.load_file(path)
  except Exception as e:  # The Rust loader raises its own opaque error types.
    raise CheckpointError(f"{path}: cannot read safetensors file: {e}") from e


def read_safetensors(path_or_dir: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """Reads a checkpoint (single file, index, or folder) into numpy arrays.

  Raises:
    CheckpointError: naming the file, when it is missing, truncated, corrupt,
      or when two shards hold the same tensor.
  """
  tensors: dict[str, np.ndarray] = {}
  for f in safetensors_files(path_or_dir):
    for k, v in read_safetensors_file(f).items():
      if k in tensors:
        raise CheckpointError(f"{f}: tensor {k!r} also appears in another"
                              " shard of the same checkpoint")
      tensors[k] = v
  return tensors


def write_safetensors(tensors: Mapping[str, np.ndarray],
                      path: str | os.PathLike[str],
                      metadata: Mapping[str, str] | None = None) -> None:
  """Writes arrays to one `.safetensors` file (atomically, via a temp file).

  Args:
    tensors: name -> array; jax arrays are copied to host first.
    path: destination file; its folder is created if needed.
    metadata: optional str -> str pairs stored in the header.
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  # safetensors refuses non-contiguous arrays and needs real numpy arrays.
  arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in tensors.items()}
  tmp = path.with_name(path.name + ".tmp")
  safetensors.numpy.save_file(
      arrays, tmp, metadata=None if metadata is None else dict(metadata))
  os.replace(tmp, path)
