"""One causal-LM fine-tuning run, top to bottom (config.task == "lm").

The same run directory, hashing, loop, checkpoints and TensorBoard logs as a
classification run (fjft.runner); what differs is the data (fjft.data.lm_splits), the
loss (next-token cross-entropy on the trained tokens, chunked over the vocabulary) and
the baseline: the same pretrained model before fine-tuning, scored on the same splits.
"""

from __future__ import annotations

import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.models import adapters
from fjft.config import experiment as config_lib
from fjft.parallel import mesh as mesh_lib
from fjft.run import rundir
from fjft.training.checkpoint import abstract_like, restore_best_params
from fjft.data import packing as lm_examples
from fjft.tasks.lm import data as lm_splits
from fjft.models.decoding import SamplingConfig, generate
from fjft.errors import ConfigError
from fjft.models.pretrained import load_lm
from fjft.training.logging import RunLogger
from fjft.training.loop import train_loop
from fjft.training.state import open_run, place_params, prepare_training
from fjft.tasks.classify.task import hparams
from fjft.tasks.lm import metrics as gen_metrics
from fjft.tasks.lm import loss as lm_loss


def run(config, workdir: str, *, rerun: bool = False, say=print) -> dict:
  """Trains (or resumes) the run of `config` under `workdir`; returns its results."""
  run_dir, finished, mesh = open_run(config, workdir, rerun, say)
  if finished is not None:
    return finished
  started = time.time()
  rules = config.sharding_rules

  lm = load_lm(config.model.name, scan_layers=config.model.scan_layers,
               remat=config.model.remat, attention_impl=config.model.attention_impl or None)
  tokenizer = lm.tokenizer
  if jax.process_index() == 0:
    tokenizer.save(os.path.join(run_dir, "tokenizer"))
  splits = lm_splits.load_lm_splits(config.data, tokenizer)
  say(lm_splits.format_report(splits.report))
  rundir.write_json(os.path.join(run_dir, "data_report.json"), splits.report)
  arrange = lm_examples.pack if config.data.pack else lm_examples.one_per_row
  rows = {name: arrange(getattr(splits, name), config.data.max_length, tokenizer.pad_id)
          for name in ("train", "dev", "test")}
  rundir.write_json(os.path.join(run_dir, "model.json"), {
      "task": "lm", "family": lm.family.__name__, "hf_config": lm.cfg.to_hf(),
      "source": lm.source, "compute_dtype": config.model.compute_dtype,
      # the parameter layout depends on these (scanned layers are stacked)
      "runtime": {"scan_layers": config.model.scan_layers, "remat": config.model.remat},
      "peft_structure": adapters.structure(config)})

  graphdef, params = nnx.split(build_model(config, lm))
  params = place_params(params, mesh, rules, say)
  apply_fn = make_apply_fn(graphdef, config.model.compute_dtype)

  def to_device(batch):
    return mesh_lib.global_batch(batch, mesh, rules)

  eval_step = jax.jit(lambda p, batch: loss_fn(apply_fn(p, batch, None), batch),
                      out_shardings=mesh_lib.replicated(mesh))

  metric_names = [m for m in config.eval.metrics.split(",") if m]
  for name in metric_names:
    if name not in gen_metrics.METRICS:
      raise ConfigError(f"config field eval.metrics: unknown metric {name!r} "
                        f"(known: {', '.join(gen_metrics.METRICS)})")
  prompts = {split: _prompts_and_references(getattr(splits, split)[:config.eval.generate],
                                            tokenizer)
             for split in ("dev", "test")} if metric_names and config.eval.generate else {}
  sampling = SamplingConfig(max_new_tokens=config.eval.max_new_tokens, temperature=0.0)

  def evaluate(params, split="dev"):
    total = count = 0.0
    for batch in lm_examples.eval_batches(rows[split], config.train.eval_batch_size):
      loss, n = jax.device_get(eval_step(params, to_device(batch)))
      total, count = total + float(loss), count + float(n)
    mean = total / max(count, 1.0)
    out = {"loss": mean, "perplexity": math.exp(min(mean, 50.0))}
    if split in prompts:
      ids, references, where = prompts[split]
      generated = []
      for i in range(0, len(ids), config.eval.batch_size):
        generated += generate(graphdef, params, lm.init_cache, ids[i:i + config.eval.batch_size],
                              pad_id=tokenizer.pad_id, stop_ids=lm.stop_ids(),
                              sampling=sampling, max_context=lm.max_context,
                              where=where[i:i + config.eval.batch_size])
      hypotheses = [tokenizer.decode(g).strip() for g in generated]
      out.update(gen_metrics.score(metric_names, hypotheses, references))
      samples[split] = [{"where": w, "reference": r, "generated": h}
                        for w, r, h in zip(where, references, hypotheses)]
    return out

  samples: dict[str, list] = {}

  baseline = _baseline(run_dir, params, evaluate, samples, say)

  # Each dev evaluation of this process's training, with what it generated: the best
  # checkpoint holds the very params of one of them, so its dev scores and replies need not
  # be generated again at the end (minutes on a CPU).
  dev_evaluations: list[tuple[dict, list | None]] = []

  def evaluate_dev(params):
    out = evaluate(params, "dev")
    dev_evaluations.append((out, samples.get("dev")))
    return out

  training = prepare_training(config, params, run_dir, apply_fn, loss_fn, say, mesh,
                              only=adapters.trainable_regex(config))
  state, checkpoints = training.state, training.checkpoints
  batches = lm_examples.RowBatches(rows["train"], config.train.batch_size, config.seed)

  logger = RunLogger(run_dir, config.train.steps, int(state.step), config.train.progress)
  logger.text("config", "```\n" + config_lib.canonical_json(config, identity_only=False) + "\n```")
  for split, values in baseline.items():
    for at in (0, config.train.steps):
      logger.scalars(at, values, f"baseline/{split}/")
  say(f"model {config.model.name}: {adapters.describe_counts(training.params)}; training "
      f"{config.train.steps} steps of {config.train.batch_size} rows x {config.data.max_length}"
      f" tokens ({len(rows['train'])} rows per epoch)")
  try:
    result = train_loop(
        state=state, train_step=training.train_step,
        batch_at=lambda s: to_device(batches.batch(s)), data_position=batches.position,
        evaluate=evaluate_dev, checkpoints=checkpoints, logger=logger, train_cfg=config.train,
        lr_at=training.lr_at, loop_state=training.loop_state)
    if result.interrupted:
      raise SystemExit(130)
    best_step, best_params = restore_best_params(run_dir, abstract_like(result.state.params))
    dev = _evaluated_at(best_step, result.loop_state.history, dev_evaluations, samples)
    results = {
        "config_hash": config_lib.config_hash(config),
        "step": int(jax.device_get(result.state.step)),
        "best_step": best_step,
        "dev": dev if dev is not None else evaluate(best_params, "dev"),
        "test": evaluate(best_params, "test"),
        "baseline": baseline,
        "history": result.loop_state.history,
        "train_loss": result.loop_state.train_loss,
        "stopped": result.loop_state.stopped,
        "params": training.params,
        "train_tokens_per_s": (result.steps_run * config.train.batch_size
                               * config.data.max_length / max(result.train_seconds, 1e-9)),
        "wall_seconds": time.time() - started,
        "run_dir": run_dir,
    }
    if samples:  # what the best checkpoint generated on dev and test
      rundir.write_json(os.path.join(run_dir, "generations.json"), samples)
    logger.hparams(hparams(config), {f"dev_{k}": v for k, v in results["dev"].items()})
    results_file = rundir.results_path(run_dir)
    rundir.write_json(results_file, results)
  finally:
    logger.close()
    checkpoints.close()
  say(summary(config, results, results_file))
  return results


def build_model(config, lm):
  """The pretrained decoder `lm` with config.peft's adapters (started from peft.init_from)."""
  model = adapters.apply(nnx.merge(lm.graphdef, lm.params), adapters.structure(config),
                         config.seed)
  adapters.load_initial(model, lm.family.hf_linear_names(lm.cfg), config)
  return model


def make_apply_fn(graphdef, compute_dtype: str):
  """(params, batch, dropout_key) -> the decoder's final features (loss_fn applies the
  head in vocabulary chunks)."""
  dtype = jnp.dtype(compute_dtype)

  def apply_fn(params, batch, dropout_key):
    model = nnx.merge(graphdef, params)
    return model.features(batch["input_ids"], batch["positions"],
                          segment_ids=batch["segment_ids"], dropout_key=dropout_key,
                          compute_dtype=dtype)

  return apply_fn


def loss_fn(features, batch):
  """Summed next-token cross-entropy over the trained tokens, and their count."""
  targets, weights = lm_loss.shifted_targets(batch["input_ids"], batch["loss_mask"],
                                             batch["segment_ids"])
  return lm_loss.cross_entropy(features, targets, weights)


def _evaluated_at(step: int, history: list, evaluations: list, samples: dict) -> dict | None:
  """The dev scores of `step` if this process evaluated it (and its replies into `samples`),
  else None. history holds every evaluation's scores by step, resumed ones included;
  `evaluations` this process's, in order, so a match of scores finds its replies."""
  at = next((h for h in history if h["step"] == step), None)
  if at is None:
    return None
  scores = {k: v for k, v in at.items() if k != "step"}
  for out, replies in evaluations:
    if {k: float(v) for k, v in out.items()} == scores:
      if replies is not None:
        samples["dev"] = replies
      return out
  return None


def _baseline(run_dir: str, params, evaluate, samples: dict, say) -> dict:
  """The pretrained model before any update, on dev and test (cached for resumes)."""
  path = os.path.join(run_dir, "baseline.json")
  if os.path.isfile(path):
    return rundir.read_json(path)
  say("scoring the pretrained model (the baseline) on dev and test")
  out = {split: evaluate(params, split) for split in ("dev", "test")}
  rundir.write_json(path, out)
  if samples:
    rundir.write_json(os.path.join(run_dir, "baseline_generations.json"), samples)
  return out


def _prompts_and_references(examples, tokenizer):
  """(prompt ids, reference texts, where) of examples: the prompt is everything before
  the first trained token, the reference that first trained span (the first reply)."""
  ids, references, where = [], [], []
  for ex in examples:
    if not ex.loss_mask.any():
      continue
    first = int(np.argmax(ex.loss_mask))
    end = first
    while end < len(ex) and ex.loss_mask[end]:
      end += 1
    if first == 0:  # plain text has no prompt: nothing to generate from
      continue
    ids.append([int(i) for i in ex.ids[:first]])
    references.append(tokenizer.decode(ex.ids[first:end]).strip())
    where.append(ex.where)
  return ids, references, where


def summary(config, results: dict, results_file: str) -> str:
  metric = config.train.metric
  lines = [f"done: {results['step']} steps, best dev {metric} at step {results['best_step']}"]
  for split in ("dev", "test"):
    ft, base = results[split][metric], results["baseline"][split][metric]
    lines.append(f"  {split:4s} {metric}: fine-tuned {ft:.4f} vs pretrained zero-shot "
                 f"{base:.4f} ({(ft - base) / base:+.1%})")
    for name in gen_metrics.METRICS:
      if name in results[split] and name != metric:
        lines.append(f"  {split:4s} {name}: fine-tuned {results[split][name]:.2f} vs "
                     f"pretrained zero-shot {results['baseline'][split][name]:.2f}")
  lines.append(f"results: {results_file}")
  lines.append(f"tensorboard --logdir {os.path.dirname(results_file)}/tb")
  return "\n".join(lines)
