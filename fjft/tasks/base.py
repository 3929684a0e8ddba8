"""The task interface: what the one runner (fjft.run.runner) asks each task for.

A Task is the stateless description of a kind of fine-tuning; `Task.start` makes the
TaskRun of one run (its data, model and evaluation), which the runner drives the same way
for every task: place the params, train with early stopping on dev, restore the best
checkpoint, report against the task's baselines. Finished runs are opened again through
`Task.open_run` (predict, generate, embed, search, export).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Protocol

from fjft.errors import ConfigError
from fjft.parallel import mesh as mesh_lib
from fjft.run import rundir
from fjft.training.loop import improves


@dataclasses.dataclass
class RunContext:
  """What the runner hands a task for one run."""
  config: Any            # the run's locked ml_collections.ConfigDict
  run_dir: str
  mesh: Any              # jax.sharding.Mesh
  say: Callable[[str], None]

  def to_device(self, batch: dict) -> dict:
    """A host batch as global arrays laid out on the mesh (each host sends its rows)."""
    return mesh_lib.global_batch(batch, self.mesh, self.config.sharding_rules)

  def report(self, report: dict) -> None:
    """Prints the data report and writes it to <run>/data_report.json: a task calls this as
    soon as its data is read, so data problems show before the model loads."""
    from fjft.data.report import format_report
    self.say(format_report(report))
    self.write("data_report.json", report)

  def write(self, name: str, obj) -> None:
    rundir.write_json(os.path.join(self.run_dir, name), obj)

  def cached(self, name: str, compute: Callable[[], dict]) -> dict:
    """A result computed once per run dir (<run>/<name>): a resumed run reads it back."""
    path = os.path.join(self.run_dir, name)
    if os.path.isfile(path):
      return rundir.read_json(path)
    value = compute()
    self.write(name, value)
    return value


def check_metric(config, available) -> None:
  """train.metric must be one of the dev metrics the task computes: said before anything
  is read or trained, not at the first evaluation."""
  if config.train.metric not in available:
    raise ConfigError(f"config field train.metric={config.train.metric!r} is not a dev metric "
                      f"of this run (it computes {', '.join(available)})")


class BestByStep:
  """What the best dev evaluation so far produced (corpus embeddings, generated replies),
  kept by its step under the loop's rule (the first step to reach the best value wins), so
  the final report reuses it when that step is the best checkpoint's."""

  def __init__(self, metric: str):
    self.metric, self.step, self.value, self.kept = metric, None, None, None

  def offer(self, step: int | None, metrics: dict, kept) -> None:
    if step is not None and (self.step is None
                             or improves(self.metric, metrics[self.metric], self.value)):
      self.step, self.value, self.kept = step, metrics[self.metric], kept

  def at(self, step: int):
    """What was kept for `step`, or None when another step's (or nothing) is kept."""
    return self.kept if self.step == step and self.step is not None else None


class Batches(Protocol):
  """Training batches: each step's batch a pure function of (seed, step)."""

  def batch(self, step: int) -> dict: ...

  def position(self, step: int) -> dict: ...


class TaskRun(Protocol):
  """One run of a task (made by Task.start)."""
  model: Any            # nnx.Module: the pretrained body with the task's heads and adapters
  family: str           # the pretrained model's HF model_type
  info: dict            # model.json's task-specific fields (hf_config, labels, lengths ...)
  tokenizer: Any
  trainable: str        # regex of the params a LoRA run trains ("" for all)

  def apply_fn(self, graphdef) -> Callable:
    """(params, batch, dropout_key) -> the model's output for loss_fn."""

  def loss_fn(self, output, batch) -> tuple[Any, Any]:
    """(summed loss, summed weight) of a batch."""

  def batches(self) -> Batches: ...

  def baselines(self, ctx: RunContext, params) -> dict[str, dict]:
    """{name: {split: metrics}}: what fine-tuning is compared with (computed once a run)."""

  # Optional: frozen_inputs() -> a tree of device arrays every train step takes besides
  # the state and batch (apply_fn sees it as batch["frozen"]), e.g. a frozen reference
  # model; called after baselines, before the first step.

  def evaluate(self, params, split: str, step: int | None = None) -> dict:
    """Metrics of `params` on `split`; the training loop passes the step it evaluates."""

  def finish(self, ctx: RunContext, params, best_step: int) -> dict:
    """{"dev": ..., "test": ..., other groups}: the best checkpoint's final scores."""

  def describe(self, counts: dict) -> str:
    """The line that says what trains: model, params, steps and batch."""

  def summary(self, results: dict) -> list[str]:
    """Lines comparing the fine-tuned scores with the baselines."""

  def commands(self, run_dir: str) -> list[str]:
    """What to run next with the finished run (predict, search, export ...)."""

  def extra_results(self, results: dict) -> dict:
    """Task-specific entries of results.json (e.g. tokens per second)."""


class TaskBase:
  """What every task's Task class does the same way: its defaults and its runs come from
  the two names it sets (`default_config = staticmethod(...)`, `run_class = <its TaskRun>`)."""
  run_class: type
  bounds: dict = {}   # field -> fjft.config.bounds.Range of the task's own fields

  def start(self, ctx: RunContext):
    return self.run_class(ctx)


class EncoderTask(TaskBase):
  """A task whose model is a pretrained encoder under a head: a finished run opens by
  rebuilding `skeleton(info)` from model.json and restoring the best params into it."""

  @staticmethod
  def skeleton(info: dict):
    raise NotImplementedError

  def open_run(self, run_dir: str, info: dict, config: dict, *, merge: bool = True):
    from fjft.run.opened import open_encoder_run
    return open_encoder_run(run_dir, info, config, lambda: self.skeleton(info), merge=merge)


class Task(Protocol):
  name: str
  # What can open a finished run of this task: use -> the command line that does it, e.g.
  # {"predict": "python -m fjft.predict"}; a command asking for another use is told these.
  uses: dict[str, str]

  # The allowed ranges of the task's own numeric fields (fjft.config.bounds), checked
  # when a config loads, beside those every task shares (fjft.config.defaults.BOUNDS).
  bounds: dict

  def default_config(self): ...

  def start(self, ctx: RunContext) -> TaskRun:
    """Reads the data and the pretrained model and builds the run's model."""

  def plan_model(self, config) -> tuple[Any, str]:
    """(the run's model as it would be built, the trainable regex): for fjft.plan."""

  def open_run(self, run_dir: str, info: dict, config: dict, *, merge: bool = True) -> Any:
    """A finished run's best model, ready to use (merge: fold LoRA adapters in)."""

  def exports(self) -> dict[str, Callable[[str, str], str]]:
    """format -> export(run_dir, out_dir) -> a message saying what was written."""

  # Uses a task offers by a method of the same name, when it lists them in `uses` (the
  # commands fjft.predict, fjft.embed and fjft.search call these on the opened run):
  #   predict(run, input_path, output_path, *, text_column, batch_size, label_column,
  #           label_map) -> lines to print
  #   embed(run, texts, batch_size, kind) -> [len(texts), dim] float32 array
  #   search(run, *, corpus, queries, k, hybrid, text_column, title_column, id_column,
  #          batch_size, output) -> None (prints the hits)

  def report_lines(self, report: dict) -> tuple[str, list[str], Callable[[dict], list[str]]]:
    """This task's part of the printed data report (fjft.data.report.format_report): what
    follows "data: <path> " on the header, the lines under it, and split -> its lines."""
