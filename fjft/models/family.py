"""What a model family is: a module that implements the `Family` protocol.

fjft.models.bert, fjft.models.llama and fjft.models.gpt2 are families. The
registry (fjft.models.registry) maps HF model_types to them, and everything
else - loading from an HF folder, a GGUF file or a state dict, placing params on
a mesh, export, LoRA targets - works from what the protocol declares, in one
place for every family (fjft.weights.hf_tensors, fjft.models.build). Adding a
family is its own module plus one line of registry.FAMILIES.

Besides the protocol, every family exposes the weight functions bound to it by
fjft.models.build.weight_functions (from_hf, from_state_dict, init_random,
to_hf_state_dict), and a decoder also init_cache(cfg, batch, max_len).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fjft.weights.hf_tensors import HFTensor

KINDS = ("encoder", "decoder")


@dataclasses.dataclass(frozen=True)
class GGUFLayout:
  """How llama.cpp's GGUF files hold a family, in Hugging Face terms.

  archs: GGUF general.architecture -> the HF model_type it is.
  top: GGUF tensor name (without .weight/.bias) -> HF module name, outside the
    blocks.
  block_prefix: the HF name of block i's module, with "{}" for i.
  block: GGUF part inside block i -> HF part (".weight" / ".bias" are kept).
  to_hf: (metadata, HF model_type, HF-named tensors) -> the HF config.json
    dict; it also fixes, in place, tensors llama.cpp stores in another layout
    than HF (Q/K rows permuted for its RoPE, GPT-2's transposed Conv1D), and
    takes out those HF keeps in the config (Phi-3's longrope factors). The
    metadata is fjft.weights.gguf_meta.Meta.
  """

  archs: Mapping[str, str]
  top: Mapping[str, str]
  block_prefix: str
  block: Mapping[str, str]
  to_hf: Callable[[Any, str, dict[str, np.ndarray]], dict[str, Any]]


@runtime_checkable
class Family(Protocol):
  """The declared surface of a family module (checked by `check`)."""

  KIND: str                       # "encoder" or "decoder"
  MODEL_TYPES: tuple[str, ...]    # the HF model_types it implements
  Config: type                    # .from_hf(hf_config_dict, **runtime_options), .to_hf()
  Model: type                     # Model(cfg, rngs=nnx.Rngs(...)) -> nnx.Module
  HF_WEIGHT_IN_FIRST: bool        # HF stores Linear weights [in, out] (PEFT fan_in_fan_out)
  GGUF: GGUFLayout | None         # None: no GGUF files of this family are read

  def hf_tensors(self, cfg: Any) -> Sequence[HFTensor]:
    """The table of every param and its HF tensor(s) (fjft.weights.hf_tensors)."""

  def canonical_name(self, cfg: Any, key: str) -> str:
    """A checkpoint's tensor name as the table spells it (prefixes, old names)."""

  def ignorable(self, cfg: Any, key: str) -> bool:
    """Whether a tensor (canonical name) outside the table may be skipped: a
    buffer or a task head fjft does not use. Anything else is an error."""

  def init_std(self, cfg: Any, path: tuple[str, ...]) -> float:
    """The std of a kernel or embedding drawn at random (HF's _init_weights)."""

  def hf_linear_names(self, cfg: Any) -> dict[str, tuple[str, ...]]:
    """LoRA target names: each Linear's dotted path -> its HF module name(s)."""


# The protocol's attributes and functions, by name.
MEMBERS = (*Family.__annotations__,
           *(n for n, v in vars(Family).items() if callable(v) and not n.startswith("_")))


def check(module: ModuleType) -> ModuleType:
  """`module`, if it implements Family; TypeError naming what it lacks if not
  (a programming error in a family, not a user's)."""
  names = [n for n in MEMBERS if not hasattr(module, n)]
  if names:
    raise TypeError(f"{module.__name__} is not a model family: it lacks {names}")
  if module.KIND not in KINDS:
    raise TypeError(f"{module.__name__}.KIND is {module.KIND!r}, not one of {KINDS}")
  return module
