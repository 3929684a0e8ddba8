"""The one mapping between a family's params and Hugging Face tensors, both ways.

A family describes its checkpoint as a table of `HFTensor`s (fjft.models.family):
which HF tensor(s) make each param, their shape, and the layout conversion. The
same table serves loading (`host_values`), export (`export`) and the names of the
Linear layers that LoRA adapters target (`linear_names`), for encoders and
decoders, and for tensors from an HF folder, a GGUF file or a state dict alike.

One policy for what a checkpoint holds beyond the table: a tensor that the
family does not declare ignorable (`family.ignorable`: buffers, task heads fjft
does not use) is an error naming its file and name, because it means the config
and the weights describe different models.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fjft.errors import CheckpointError
from fjft.models.params import flat_params
from fjft.weights import safetensors_io

ParamPath = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class HFTensor:
  """One param <-> its HF tensor(s).

  path: our param path; for a per-layer entry, inside the layer.
  hf_keys: the HF tensor names (several for a fused param such as BERT's
    q/k/v); a per-layer entry has "{i}" where the layer index goes.
  hf_shape: the shape of each HF tensor.
  to_ours: the HF arrays (in hf_keys order) -> our param (numpy, any dtype).
  to_hf: our param -> the HF arrays.
  optional: may be absent from a checkpoint; the param is then drawn at
    random (and a warning logged), as HF does for a missing pooler.
  """

  path: ParamPath
  hf_keys: tuple[str, ...]
  hf_shape: tuple[int, ...]
  to_ours: Callable[[Sequence[np.ndarray]], np.ndarray]
  to_hf: Callable[[np.ndarray], Sequence[np.ndarray]]
  optional: bool = False

  @property
  def per_layer(self) -> bool:
    return "{i}" in self.hf_keys[0]


def _one(fn: Callable[[np.ndarray], np.ndarray]):
  """(to_ours, to_hf) halves for a single-tensor entry from a per-array function."""
  return lambda arrays: fn(arrays[0])


def _same(a: np.ndarray) -> np.ndarray:
  return a


def _transpose(a: np.ndarray) -> np.ndarray:
  return a.T


def tensor(path: ParamPath, key: str, shape: tuple[int, ...],
           to_ours: Callable[[np.ndarray], np.ndarray] = _same,
           to_hf: Callable[[np.ndarray], np.ndarray] = _same, *,
           optional: bool = False) -> HFTensor:
  """An entry of one HF tensor, converted by per-array functions."""
  return HFTensor(path, (key,), shape, _one(to_ours), lambda p: [to_hf(p)], optional)


def linear(path: ParamPath, hf: str, n_in: int, n_out: int, *, bias: bool,
           transposed: bool = True, optional: bool = False) -> list[HFTensor]:
  """A Linear's kernel (and bias): HF module `hf` with .weight [out, in] (torch
  Linear, `transposed`) or [in, out] (HF's Conv1D, as ours)."""
  if transposed:
    out = [tensor((*path, "kernel"), f"{hf}.weight", (n_out, n_in), _transpose,
                  _transpose, optional=optional)]
  else:
    out = [tensor((*path, "kernel"), f"{hf}.weight", (n_in, n_out), optional=optional)]
  if bias:
    out.append(tensor((*path, "bias"), f"{hf}.bias", (n_out,), optional=optional))
  return out


def norm(path: ParamPath, hf: str, dim: int, *, bias: bool) -> list[HFTensor]:
  """A norm's scale (HF .weight) and, for LayerNorm, its bias."""
  out = [tensor((*path, "scale"), f"{hf}.weight", (dim,))]
  if bias:
    out.append(tensor((*path, "bias"), f"{hf}.bias", (dim,)))
  return out


# ------------------------------------------------------------- the tensors ---


@dataclasses.dataclass
class Tensors:
  """HF-named tensors and where each came from (for error messages).

  arrays: name -> host array (memory-mapped when read from safetensors).
  files: name -> the file holding it; names absent here come from `where`.
  where: the checkpoint in words: a file, "<folder> (sharded)", "state dict".
  """

  arrays: Mapping[str, np.ndarray]
  files: Mapping[str, str]
  where: str

  def file(self, name: str) -> str:
    return self.files.get(name, self.where)


def read_folder(path: str | Path) -> Tensors:
  """The memory-mapped tensors of an HF folder (one safetensors file or an index
  and its shards); CheckpointError names a tensor that two shards both hold."""
  folder = Path(path)
  files = safetensors_io.safetensors_files(folder)
  arrays: dict[str, np.ndarray] = {}
  source: dict[str, str] = {}
  for f in files:
    for k, v in safetensors_io.map_safetensors_file(f).items():
      if k in arrays:
        raise CheckpointError(f"{f}: tensor {k!r} also appears in {source[k]}")
      arrays[k], source[k] = v, str(f)
  where = str(files[0]) if len(files) == 1 else f"{folder} (sharded)"
  return Tensors(arrays, source, where)


def _canonical(family, cfg, tensors: Tensors) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """(arrays keyed by the table's spelling of each name, that name -> the name in
  the file). Checkpoints spell names variously (with or without a model prefix,
  old LayerNorm gamma/beta); family.canonical_name maps each to one spelling."""
  arrays: dict[str, np.ndarray] = {}
  original: dict[str, str] = {}
  for k, v in tensors.arrays.items():
    c = family.canonical_name(cfg, k)
    if c in arrays:
      raise CheckpointError(f"{tensors.file(k)}: tensors {original[c]!r} and {k!r} are"
                            f" both the model's {c!r} (spelt with and without a prefix)")
    arrays[c], original[c] = v, k
  return arrays, original


def layer_path(t: HFTensor, i: int | None) -> ParamPath:
  """Where a table entry's param lives: in layer i, or (i None, scan_layers) in
  the stacked layers, whose params have a leading [num_layers] axis."""
  if not t.per_layer:
    return t.path
  return ("layers", *t.path) if i is None else ("layers", str(i), *t.path)


def optional_params(table: Sequence[HFTensor], num_layers: int, scan: bool) -> set[ParamPath]:
  """The param paths of the table's optional entries (drawn when absent)."""
  return {layer_path(t, None if scan else i) for t in table if t.optional
          for i, _ in _layers(t, num_layers)}


def _layers(t: HFTensor, num_layers: int) -> list[tuple[int | None, tuple[str, ...]]]:
  """(layer index, or None outside the layers; its HF names) of a table entry."""
  if not t.per_layer:
    return [(None, t.hf_keys)]
  return [(i, tuple(k.format(i=i) for k in t.hf_keys)) for i in range(num_layers)]


def _entries(table: Sequence[HFTensor], num_layers: int
             ) -> Iterator[tuple[HFTensor, int | None, tuple[str, ...]]]:
  """(entry, layer index or None, its HF names) for every tensor set of the table."""
  for t in table:
    for i, keys in _layers(t, num_layers):
      yield t, i, keys


def host_values(family, cfg, tensors: Tensors, *, log: logging.Logger | None = None
                ) -> dict[ParamPath, Callable[[], np.ndarray]]:
  """Our param path -> a function giving its value on the host, from HF tensors.

  Everything is checked before anything is converted: a missing or mis-shaped
  tensor, or one the model has no place for. The functions convert lazily, so a
  loader holds one param's host value at a time; for memory-mapped tensors the
  value is a view of the file where the layout allows (a transpose, a reshape).
  Params of an optional entry that the checkpoint lacks are left out (the
  builder draws them).

  Raises:
    CheckpointError: naming the file (or `tensors.where`) and the tensor.
  """
  log = log or logging.getLogger(family.__name__)
  arrays, original = _canonical(family, cfg, tensors)
  scan = bool(getattr(cfg, "scan_layers", False))
  table = family.hf_tensors(cfg)
  used: set[str] = set()
  absent_optional: list[str] = []
  found: list[tuple[HFTensor, list[tuple[int | None, list[np.ndarray]]]]] = []
  for t in table:
    present = []
    for i, keys in _layers(t, cfg.num_layers):
      missing = [k for k in keys if k not in arrays]
      if missing and t.optional:
        absent_optional += missing
        continue
      if missing:
        raise CheckpointError(f"{tensors.where}: missing tensor {missing[0]!r} (expected"
                              f" shape {t.hf_shape})")
      for k in keys:
        if tuple(arrays[k].shape) != tuple(t.hf_shape):
          raise CheckpointError(
              f"{tensors.file(original[k])}: tensor {original[k]!r} has shape"
              f" {tuple(arrays[k].shape)}, expected {tuple(t.hf_shape)} from the"
              " model's config")
      used.update(keys)
      present.append((i, [arrays[k] for k in keys]))
    found.append((t, present))
  _check_unexpected(family, cfg, tensors, arrays, original, used, log)
  if absent_optional:
    log.warning("%s: no %s in the checkpoint; those params are randomly initialised",
                tensors.where, ", ".join(absent_optional))

  values: dict[ParamPath, Callable[[], np.ndarray]] = {}
  for t, present in found:
    if t.per_layer and scan and present:
      parts = [p for _, p in present]
      values[layer_path(t, None)] = (
          lambda t=t, parts=parts: np.stack([t.to_ours(p) for p in parts]))
      continue
    for i, p in present:
      values[layer_path(t, i)] = lambda t=t, p=p: t.to_ours(p)
  return values


def _check_unexpected(family, cfg, tensors: Tensors, arrays, original, used, log) -> None:
  ignored = sorted(k for k in set(arrays) - used if family.ignorable(cfg, k))
  unexpected = sorted(original[k] for k in set(arrays) - used - set(ignored))
  if unexpected:
    k = unexpected[0]
    raise CheckpointError(
        f"{tensors.file(k)}: unexpected tensor {k!r} (shape"
        f" {tuple(tensors.arrays[k].shape)}), not part of this model as its config"
        f" describes it ({len(unexpected)} unexpected in all: {unexpected[:5]})")
  if ignored:
    log.info("%s: ignoring %d tensors this model does not use, e.g. %s",
             tensors.where, len(ignored), [original[k] for k in ignored[:5]])


def export(family, cfg, model_state: Any) -> dict[str, np.ndarray]:
  """HF name -> float32 array in HF layout: the inverse of host_values.

  model_state: a Model, its nnx.State, or nnx.to_pure_dict of it.
  """
  flat = flat_params(model_state)
  scan = bool(getattr(cfg, "scan_layers", False))
  out = {}
  for t, i, keys in _entries(family.hf_tensors(cfg), cfg.num_layers):
    if i is not None and scan:
      value = flat[layer_path(t, None)][i]
    else:
      value = flat[layer_path(t, i)]
    for k, a in zip(keys, t.to_hf(value)):
      out[k] = np.ascontiguousarray(a, np.float32)
  return out


def linear_names(table: Sequence[HFTensor], num_layers: int) -> dict[str, tuple[str, ...]]:
  """Dotted path of each Linear ("layers.3.self_attn.q_proj", per layer even when
  layers are stacked) -> its HF module name(s): what PEFT adapter keys and LoRA
  target names are made of. A fused param has several (BERT's q, k and v)."""
  out = {}
  for t, i, keys in _entries(table, num_layers):
    if t.path[-1] == "kernel":
      rest = ".".join(t.path[:-1])
      name = rest if i is None else f"layers.{i}.{rest}"
      out[name] = tuple(k.removesuffix(".weight") for k in keys)
  return out
