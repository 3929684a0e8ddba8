"""Decodes GGUF tensor bytes (float and llama.cpp's block-quantised types) to float32."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

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


def block_elements(type_name: str) -> int:
  """Elements per block of a supported type (1 for the float types)."""
  return _BLOCKS[type_name][0]


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
