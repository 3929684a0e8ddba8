"""The training loop: steps, intervals, evaluation, early stopping, checkpoints, preemption.

The loop never waits on the step it just dispatched: at a log interval it reads the
metrics of the previous step, which has finished by then while the current one runs.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from typing import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils

from fjft.errors import FjftError

# Dev metrics where smaller is better; every other metric (accuracy, F1, BLEU...) grows.
LOWER_IS_BETTER = ("loss", "perplexity")


def improves(metric: str, value: float, best: float | None) -> bool:
  """Whether a dev `value` of `metric` beats the best so far (None: nothing yet). Ties do
  not: the best checkpoint is the first step that reached the best value."""
  if best is None:
    return True
  return value < best if metric in LOWER_IS_BETTER else value > best


@dataclasses.dataclass
class LoopState:
  """What the loop must remember across a stop: saved as checkpoint meta."""
  best_metric: float | None = None
  best_step: int | None = None
  bad_evals: int = 0
  history: list = dataclasses.field(default_factory=list)   # [{"step", dev metrics...}]
  train_loss: list = dataclasses.field(default_factory=list)   # [[step, loss]] at log steps
  stopped: str | None = None   # "steps" | "early_stopping" once finished

  def to_meta(self, data_position: dict) -> dict:
    return dict(dataclasses.asdict(self), data_position=data_position)

  @classmethod
  def from_meta(cls, meta: dict) -> "LoopState":
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in meta.items() if k in fields})


class StopSignal:
  """Turns SIGTERM/SIGINT into a flag the loop checks between steps, so it can save first."""

  def __init__(self):
    self.received = None
    self._old = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._old[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    if self.received is not None:  # a second Ctrl-C means: stop now
      raise KeyboardInterrupt
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


@dataclasses.dataclass
class LoopResult:
  state: object
  loop_state: LoopState
  interrupted: str | None
  train_seconds: float
  steps_run: int


def train_loop(*, state, train_step: Callable, batch_at: Callable[[int], dict],
               data_position: Callable[[int], dict], evaluate: Callable[[object, int], dict],
               checkpoints, logger, train_cfg, lr_at: Callable[[int], float],
               loop_state: LoopState) -> LoopResult:
  """Runs from state.step to train_cfg.steps (or early stop); returns the final state.

  evaluate(params, step) -> dev metrics: the step lets an evaluation be cached by the step it
  scored, for the best checkpoint's final report.
  """
  total = train_cfg.steps
  step = int(jax.device_get(state.step))
  start_step, pending, interrupted = step, None, None
  t0 = time.time()

  def flush():
    nonlocal pending
    if pending is not None:
      _log_train(logger, pending, lr_at, train_cfg.batch_size, loop_state)
      pending = None

  def save(s, st):
    flush()  # the checkpoint's meta then holds every logged loss up to s; saving waits anyway
    checkpoints.save(s, st, loop_state.to_meta(data_position(s)))

  with StopSignal() as stop:
    while step < total and loop_state.stopped is None:
      state, metrics = train_step(state, batch_at(step))
      step += 1
      flush()  # the previous step's metrics: finished, so reading them is free
      if step % train_cfg.log_every == 0 or step == total:
        pending = (step, metrics)
      logger.advance(step)

      if step % train_cfg.eval_every == 0 or step == total:
        flush()
        dev = evaluate(state.params, step)
        _record_eval(loop_state, step, dev, train_cfg, logger)
        if loop_state.best_step == step:
          checkpoints.save_best(step, state.params)
        if train_cfg.patience and loop_state.bad_evals >= train_cfg.patience:
          loop_state.stopped = "early_stopping"
          logger.message(f"early stopping at step {step}: no dev {train_cfg.metric} gain in "
                         f"{loop_state.bad_evals} evaluations (best {loop_state.best_metric:.4f} "
                         f"at step {loop_state.best_step})")
        elif step == total:
          loop_state.stopped = "steps"
        save(step, state)
      elif step % train_cfg.checkpoint_every == 0:
        save(step, state)

      received = _agreed_stop(stop, step, train_cfg.log_every)
      if received and loop_state.stopped is None:
        interrupted = received
        save(step, state)
        logger.message(f"{interrupted}: saved a checkpoint at step {step}; "
                       "run the same command again to resume")
        break
  flush()
  return LoopResult(state=state, loop_state=loop_state, interrupted=interrupted,
                    train_seconds=time.time() - t0, steps_run=step - start_step)


def _agreed_stop(stop: StopSignal, step: int, every: int) -> str | None:
  """The stop signal's name once every process knows of it, else None.

  With several processes, SIGTERM may reach one host a step before another, and a host
  that stopped alone would leave the others waiting in a collective: every `every` steps
  the hosts share their flags (a small all-gather), and all stop if any was signalled.
  """
  if jax.process_count() == 1:
    return stop.received
  if step % every:
    return None
  flags = multihost_utils.process_allgather(np.int32(stop.received is not None))
  return (stop.received or "a stop signal on another host") if np.any(flags) else None


def _log_train(logger, pending, lr_at, batch_size, loop_state: LoopState):
  step, metrics = pending
  values = {k: float(v) for k, v in jax.device_get(metrics).items()}
  loop_state.train_loss.append([step, values["loss"]])
  if not math.isfinite(values["loss"]):
    raise FjftError(f"the training loss became {values['loss']} by step {step}: lower optim.lr, "
                    "keep optim.clip_norm > 0, or check the data for broken labels")
  values["lr"] = float(lr_at(step - 1))
  logger.train_progress(step, values, batch_size)


def _record_eval(loop_state: LoopState, step: int, dev: dict, train_cfg, logger) -> None:
  metric = train_cfg.metric
  if metric not in dev:
    raise FjftError(f"config field train.metric={metric!r} is not a dev metric (have {sorted(dev)})")
  value = float(dev[metric])
  loop_state.history.append(dict(step=step, **{k: float(v) for k, v in dev.items()}))
  logger.scalars(step, dev, "dev/")
  improved = improves(metric, value, loop_state.best_metric)
  if improved:
    loop_state.best_metric, loop_state.best_step, loop_state.bad_evals = value, step, 0
  else:
    loop_state.bad_evals += 1
  shown = " ".join(f"{k}={v:.4f}" for k, v in dev.items())
  logger.message(f"step {step}: dev {shown}" + ("  (best)" if improved else ""))
