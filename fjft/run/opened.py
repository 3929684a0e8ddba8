"""Open a finished (or running) run directory through its task: the best checkpoint's
model, ready to predict, generate, embed, search or export.

model.json says which task wrote the run and which model family it fine-tuned; the task
(fjft.tasks.get) rebuilds the model's shapes and restores the best params into them.
Run directories written before model.json recorded both still open: `read_info` reads the
older layout.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax
from flax import nnx

from fjft import tasks
from fjft.errors import CheckpointError, FjftError
from fjft.models.layers import lora
from fjft.models.tokenizer import Tokenizer
from fjft.run import rundir
from fjft.training.checkpoint import abstract_like, restore_best_params


@dataclasses.dataclass
class LoadedRun:
  """An encoder run's best model (a decoder run opens as a fjft.models.pretrained.LM)."""
  run_dir: str
  task: str
  config: dict          # config.json
  info: dict            # model.json (read_info)
  tokenizer: Tokenizer
  graphdef: Any
  params: Any
  best_step: int
  # jitted functions of this run (fjft.tasks.<task>.use), built on first use and kept
  compiled: dict = dataclasses.field(default_factory=dict)


class RunInfo(dict):
  """model.json: an entry the run's code needs that the file lacks is a CheckpointError
  naming the file and the entry, not a KeyError."""

  def __init__(self, d: dict, path: str):
    super().__init__(d)
    self.path = path

  def __missing__(self, key):
    raise CheckpointError(f"{self.path}: no {key!r} entry (the file is incomplete, or was "
                          "written by another fjft version)")


def read_info(run_dir: str) -> dict:
  """A run's model.json, with `task` and `family` (an HF model_type) always set.

  Older run dirs lack `task` when they are classification runs, and decoder runs named the
  family by a Python module path ("fjft.models.llama"): the model_type is in hf_config.
  """
  if not os.path.isdir(run_dir):
    raise FjftError(f"--run: {run_dir} is not a run directory")
  path = os.path.join(run_dir, "model.json")
  if not os.path.isfile(path):
    raise CheckpointError(f"--run: {run_dir} has no model.json: is it an fjft run directory?")
  info = RunInfo(rundir.read_json(path), path=path)
  info.setdefault("task", tasks.UNNAMED_RUN_TASK)
  family = info.get("family")
  if not isinstance(family, str) or "." in family:
    info["family"] = info.get("hf_config", {}).get("model_type")
  return info


def open_run(run_dir: str, use: str | None = None, *, merge: bool = True):
  """The best model of `run_dir`, opened by its task; with `use` ("predict", "generate",
  "embed", "search"), an error that names the right command when the run's task does not
  offer it. A LoRA run's adapters are merged into plain kernels unless `merge` is False."""
  info = read_info(run_dir)
  task = tasks.get(info["task"])
  check_use(task, run_dir, use)
  config = rundir.read_json(os.path.join(run_dir, "config.json"))
  return task.open_run(run_dir, info, config, merge=merge)


def check_use(task, run_dir: str, use: str | None) -> None:
  """A command that calls into the task (predict, embed, search) needs the task to offer
  that use by a method of the same name; generate and export need only the run."""
  offered = use in task.uses and (use in ("generate", "export") or hasattr(task, use))
  if use is not None and not offered:
    commands = sorted({c for u, c in task.uses.items() if u != "export"})
    raise FjftError(f"--run: {run_dir} is a {task.name} run, which fjft.{use} does not open; "
                    f"use {' or '.join(commands)}")


def restore(run_dir: str, build: Callable[[], nnx.Module], structure: dict | None,
            merge: bool) -> tuple[Any, Any, int]:
  """(graphdef, best params, best step): `build` makes the run's model (its shapes: it is
  run under nnx.eval_shape, so nothing is allocated before the restore)."""
  graphdef, abstract = nnx.split(nnx.eval_shape(build))
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), abstract)
  best_step, params = restore_best_params(run_dir, abstract_like(target))
  if merge and structure:
    graphdef, params = nnx.split(lora.merge(nnx.merge(graphdef, params)))
  return graphdef, params, int(best_step)


def open_encoder_run(run_dir: str, info: dict, config: dict, build: Callable[[], nnx.Module],
                     *, merge: bool) -> LoadedRun:
  """An encoder task's run: `build` makes its model (encoder and head) from model.json."""
  graphdef, params, best_step = restore(run_dir, build, info.get("peft_structure"), merge)
  return LoadedRun(run_dir=run_dir, task=info["task"], config=config, info=info,
                   tokenizer=Tokenizer.from_dir(os.path.join(run_dir, "tokenizer")),
                   graphdef=graphdef, params=params, best_step=best_step)


def export(run_dir: str, fmt: str, out_dir: str) -> str:
  """Writes the run's best model in `fmt` (one of its task's exports); returns what to do
  with the result, as a line to print."""
  info = read_info(run_dir)
  task = tasks.get(info["task"])
  exports = task.exports()
  if fmt not in exports:
    raise FjftError(f"--format={fmt}: a {task.name} run exports as {', '.join(exports)}")
  return exports[fmt](run_dir, out_dir)
