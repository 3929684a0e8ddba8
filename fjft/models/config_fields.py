"""What every family's Config does with an HF config.json: read its fields from a
(Config field, HF key, default) table, write them back, and check values."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from fjft.errors import ConfigError

ATTENTION_IMPLS = (None, "xla", "cudnn")
REMAT_POLICIES = ("none", "full", "dots_saveable")

# Marks a required field in a family's (field, HF key, default) table.
REQUIRED = object()

Fields = Sequence[tuple[str, str, Any]]


@dataclasses.dataclass(frozen=True)
class DecoderRuntime:
  """The runtime options of every decoder Config: a run's choices, not read from or
  written to config.json (the family Configs derive from this).

  attention_impl: None (jax picks; XLA on CPU), "xla" or "cudnn" (GPU,
    16-bit compute_dtype); attention with dropout always runs as XLA ops.
  scan_layers: stack layer params on a leading "layers" axis and run the
    layers under jax.lax.scan (one compiled layer instead of num_layers).
  remat: "none", "full" (recompute each layer in the backward pass) or
    "dots_saveable" (keep matmul outputs, recompute the rest).
  attention_dropout, hidden_dropout: on attention probabilities and on each
    residual branch; 0 by default, as most causal-LM fine-tuning runs.
  """

  attention_impl: str | None = None
  scan_layers: bool = False
  remat: str = "none"
  attention_dropout: float = 0.0
  hidden_dropout: float = 0.0


def hf_kwargs(d: Mapping[str, Any], fields: Fields) -> dict[str, Any]:
  """Config field -> value read from an HF config dict, per `fields`.

  Raises:
    ConfigError: a REQUIRED field's HF key is absent.
  """
  missing = [hf for _, hf, default in fields if default is REQUIRED and hf not in d]
  if missing:
    raise ConfigError(f"HF config lacks required fields {missing}")
  return {f: d.get(hf, default) for f, hf, default in fields}


def hf_dict(cfg: Any, fields: Fields) -> dict[str, Any]:
  """HF key -> the Config's value, per `fields` (the inverse of hf_kwargs)."""
  return {hf: getattr(cfg, f) for f, hf, _ in fields}


def check_types(cfg: Any) -> None:
  """Each int / float / str field of a dataclass Config holds one (bool is no int)."""
  for f in dataclasses.fields(cfg):
    value = getattr(cfg, f.name)
    # Annotations are strings here (postponed evaluation).
    wanted = {"int": (int,), "float": (int, float), "str": (str,)}.get(f.type)
    if wanted and (isinstance(value, bool) or not isinstance(value, wanted)):
      raise ConfigError(f"{f.name} must be {f.type}, got {value!r}")


def check_positive_ints(cfg: Any, names: Sequence[str]) -> None:
  for name in names:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ConfigError(f"{name} must be a positive int, got {value!r}")


def check_attention_impl(cfg: Any) -> None:
  if cfg.attention_impl not in ATTENTION_IMPLS:
    raise ConfigError(f"attention_impl {cfg.attention_impl!r} is not one"
                      f" of {list(ATTENTION_IMPLS)}")


def check_dropout(cfg: Any, names: Sequence[str]) -> None:
  for name in names:
    if not 0.0 <= getattr(cfg, name) < 1.0:
      raise ConfigError(f"{name} must be in [0, 1), got {getattr(cfg, name)}")


def check_runtime_options(cfg: Any, dropout_names: Sequence[str]) -> None:
  """Validates attention_impl, remat and the named dropout rates of `cfg`."""
  check_attention_impl(cfg)
  if cfg.remat not in REMAT_POLICIES:
    raise ConfigError(f"remat {cfg.remat!r} is not one of {list(REMAT_POLICIES)}")
  check_dropout(cfg, dropout_names)


def hash_fields(cfg: Any) -> int:
  """A frozen Config's hash from its fields as JSON: nnx graphdefs (and so jit caches) hash
  the Config, and a dict field (rope_scaling) would fail the generated hash."""
  return hash(json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str))
