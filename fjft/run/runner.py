"""THE runner: one run of any task, top to bottom.

config -> run dir (or its finished results) -> the task's data and model (Task.start) ->
params placed on the mesh -> the task's baselines -> train state (fresh or resumed) ->
the loop (evaluating dev, early stopping, checkpoints) -> the best checkpoint's final scores
-> results.json and the summary. `python -m fjft.train` is a thin main over `run()`; sweep
and reproduce call it too, and tests call it directly.
"""

from __future__ import annotations

import functools
import os
import sys
import time

import jax
from flax import nnx

from fjft import tasks
from fjft.config import experiment as config_lib
from fjft.config import identity
from fjft.models import adapters
from fjft.run import rundir
from fjft.run.start import begin_run
from fjft.tasks.base import RunContext
from fjft.training.checkpoint import RunCheckpoints, abstract_like
from fjft.training.logging import RunLogger
from fjft.training.loop import train_loop
from fjft.training.state import place_params, prepare_training


def run(config, workdir: str, *, rerun: bool = False, say=print) -> dict:
  """Trains (or resumes) `config`'s run under `workdir`; returns its results (a finished
  run's results are returned as they are, unless `rerun`)."""
  task = tasks.get(config.get("task"))
  run_dir, finished, mesh, lock = begin_run(config, workdir, rerun, say)
  if finished is not None:
    return finished
  with lock:   # released on every way out; a kill -9 leaves it, and the next run sees why
    return _train(config, task, run_dir, mesh, say)


def _train(config, task, run_dir: str, mesh, say) -> dict:
  started = time.time()
  ctx = RunContext(config, run_dir, mesh, say)
  job = task.start(ctx)
  if jax.process_index() == 0:
    job.tokenizer.save(os.path.join(run_dir, "tokenizer"))
  ctx.write("model.json", dict(job.info, task=task.name, family=job.family,
                               compute_dtype=config.model.compute_dtype,
                               peft_structure=adapters.structure(config)))

  graphdef, params = nnx.split(job.model)
  job.model = None   # the params live on in `params` only, and move to the mesh next
  params = place_params(params, mesh, config.sharding_rules, say)
  apply_fn = job.apply_fn(graphdef)
  baselines = job.baselines(ctx, params)   # cached in the run dir: computed before any step
  # Made here, on every process at the same point (Orbax syncs the hosts as it opens them).
  checkpoints = RunCheckpoints(run_dir, config.train.keep_checkpoints)
  if checkpoints.latest_step() is not None:
    # Resuming: the state is restored straight into this layout, so keep only the shapes
    # and shardings of the pretrained params, not a second copy of them.
    params = abstract_like(params)
  training = prepare_training(config, params, run_dir, apply_fn, job.loss_fn, say, mesh,
                              only=job.trainable, checkpoints=checkpoints)
  del params   # the train state holds the params from here
  state = training.state
  frozen = job.frozen_inputs() if hasattr(job, "frozen_inputs") else None
  train_step = (training.train_step if frozen is None
                else functools.partial(training.train_step, frozen_inputs=frozen))
  batches = job.batches()

  # said before the logger starts its progress bar, which the line would otherwise break
  say(job.describe(training.params))
  logger = RunLogger(run_dir, config.train.steps, int(state.step), config.train.progress)
  logger.text("config", "```\n" + identity.canonical_json(config, identity_only=False) + "\n```")
  # The baselines as flat lines over the whole run, to read the dev curves against.
  for name, by_split in baselines.items():
    for split, values in by_split.items():
      for at in (0, config.train.steps):
        logger.scalars(at, values, f"{name}/{split}/")
  try:
    result = train_loop(
        state=state, train_step=train_step,
        batch_at=lambda s: ctx.to_device(batches.batch(s)), data_position=batches.position,
        evaluate=lambda p, step: job.evaluate(p, "dev", step), checkpoints=checkpoints,
        logger=logger, train_cfg=config.train, lr_at=training.lr_at,
        loop_state=training.loop_state)
    if result.interrupted:
      raise SystemExit(130)
    best_step, best_params = checkpoints.restore_best(abstract_like(result.state.params), say)
    final = job.finish(ctx, best_params, int(best_step))
    results = {
        "config_hash": identity.config_hash(config),
        "run_dir": os.path.abspath(run_dir),
        "step": int(jax.device_get(result.state.step)),
        "best_step": int(best_step),
        "stopped": result.loop_state.stopped,
        **baselines,
        **final,
        "history": result.loop_state.history,
        "train_loss": result.loop_state.train_loss,
        "params": training.params,
        # rows, examples or queries: whatever one row of train.batch_size is for the task
        "train_examples_per_s": (result.steps_run * config.train.batch_size
                                 / max(result.train_seconds, 1e-9)),
        "wall_seconds": time.time() - started,
    }
    results.update(job.extra_results(results))
    for name, by_split in final.items():   # groups beyond dev/test (e.g. hybrid search)
      if name not in ("dev", "test"):
        for split, values in by_split.items():
          logger.scalars(int(best_step), values, f"{name}/{split}/")
    logger.hparams(hparams(config), {f"dev_{k}": v for k, v in results["dev"].items()})
    results_file = rundir.results_path(run_dir)
    rundir.write_json(results_file, results)
  finally:
    close_in_order(logger.close, checkpoints.close)
  say(summary(config, job, results, run_dir))
  return results


def close_in_order(*closes) -> None:
  """Closes what the run opened, in order; a close that fails (a full disk at the last
  flush) is said in one line and does not hide the error that ended the run."""
  for close in closes:
    try:
      close()
    except Exception as e:  # noqa: BLE001 - whatever it is, the others must still close
      print(f"warning: {getattr(close, '__qualname__', close)}: {type(e).__name__}: "
            f"{' '.join(str(e).split())}", file=sys.stderr)


def hparams(config) -> dict:
  return {key: config_lib.get_field(config, key) for key in config_lib.flat_keys(config)}


def summary(config, job, results: dict, run_dir: str) -> str:
  lines = [f"done: {results['step']} steps, best dev {config.train.metric} at step "
           f"{results['best_step']}"]
  lines += job.summary(results)
  lines.append(f"results: {rundir.results_path(run_dir)}")
  lines.append(f"tensorboard --logdir {run_dir}/tb")
  lines += job.commands(run_dir)
  return "\n".join(lines)


def best_params(run_dir: str):
  """The best checkpoint's params of a finished run of any task (adapters merged)."""
  from fjft.run import opened
  return opened.open_run(run_dir).params
