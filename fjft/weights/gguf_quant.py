"""Decodes GGUF tensor bytes to float32 with the `gguf` package's dequantisers.

The package (gguf.quants.dequantize) decodes every type llama.cpp writes that it
knows: the float types, the legacy block types (Q4_0 ... Q8_0), the K-quants
(Q2_K ... Q6_K), the I-quants (IQ1_S ... IQ4_XS) and more. Its input is a tensor's
bytes shaped as rows of whole blocks; fjft's part is only to cut the file's flat
bytes into such rows and hand back an array of the tensor's own (numpy) shape that
no longer points into the memory-mapped file.

fjft feeds the package's per-type decoder (gguf.quants.<TYPE>.dequantize_rows) rows
of about _CHUNK_ELEMENTS elements at a time into one preallocated array, rather than
calling gguf.quants.dequantize, which does the same per 16 rows and concatenates:
that made decoding 1.5-4x slower (most with narrow rows, as SmolLM2's 576), and
chunks that fit in cache decode as fast as fjft's former hand-written decoders or
faster. The values are the package's either way (tests/weights/test_gguf_quants.py).
"""

from __future__ import annotations

import functools

import gguf
import numpy as np


# Elements decoded per call of a type's decoder (its temporaries a few MB).
_CHUNK_ELEMENTS = 1 << 18


def _qtype(type_name: str) -> gguf.GGMLQuantizationType:
  return gguf.GGMLQuantizationType[type_name]


def _rows_decoder(qtype: gguf.GGMLQuantizationType):
  """The package's decoder of rows of whole blocks of qtype, or None (the float types,
  which gguf.quants.dequantize converts whole, or a package without per-type classes)."""
  cls = getattr(gguf.quants, qtype.name, None)
  if getattr(cls, "qtype", None) is not qtype or not hasattr(cls, "dequantize_rows"):
    return None
  cls.init_grid()  # the I-quants' lookup grids, built once
  return cls.dequantize_rows


@functools.cache
def supported_types() -> tuple[str, ...]:
  """Names of the tensor types the installed gguf package dequantises, in its enum's
  order (found by asking it to decode one block of each: a type it lacks raises
  NotImplementedError)."""
  names = []
  for qtype in gguf.GGMLQuantizationType:
    block_bytes = gguf.GGML_QUANT_SIZES[qtype][1]
    try:
      gguf.quants.dequantize(np.zeros((1, block_bytes), np.uint8), qtype)
    except NotImplementedError:
      continue
    names.append(qtype.name)
  return tuple(names)


def block_elements(type_name: str) -> int:
  """Elements per block of a type (1 for the float types)."""
  return gguf.GGML_QUANT_SIZES[_qtype(type_name)][0]


def n_bytes(type_name: str, n_elements: int) -> int:
  """Bytes that n_elements (a whole number of blocks) of a type take."""
  per_block, block_bytes = gguf.GGML_QUANT_SIZES[_qtype(type_name)]
  return n_elements // per_block * block_bytes


def dequantize(raw: np.ndarray, type_name: str, shape: tuple[int, ...]) -> np.ndarray:
  """Decodes a tensor's little-endian bytes to a float32 array of numpy `shape`.

  Args:
    raw: exactly the tensor's bytes (uint8; n_bytes(type_name, prod(shape))), e.g. a
      slice of the memory-mapped file; the result does not share its memory.
    type_name: one of supported_types() (NotImplementedError from the package
      otherwise).
    shape: numpy order, slowest-varying dimension first; its last dimension a whole
      number of blocks.
  """
  qtype = _qtype(type_name)
  per_block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
  row = shape[-1] if shape else 1
  rows = np.asarray(raw, dtype=np.uint8).reshape(-1, row // per_block * block_bytes)
  decode = _rows_decoder(qtype)
  if decode is None:
    values = gguf.quants.dequantize(rows, qtype)
    if np.may_share_memory(values, rows):  # F32 comes back as a view of the bytes
      values = values.copy()
    return values.astype(np.float32, copy=False).reshape(shape)
  out = np.empty((len(rows), row), np.float32)
  step = max(1, _CHUNK_ELEMENTS // max(row, 1))
  for start in range(0, len(rows), step):
    out[start:start + step] = decode(rows[start:start + step])
  return out.reshape(shape)
