"""One classification run, top to bottom: config -> data -> model -> loop -> results.

`python -m fjft.train` is a thin main over `run()`; tests call `run()` directly.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.models import adapters
from fjft.tasks.classify import baseline as baseline_lib
from fjft.config import experiment as config_lib
from fjft.parallel import mesh as mesh_lib
from fjft.run import rundir
from fjft.training.checkpoint import abstract_like, restore_best_params
from fjft.data import batches as batches_lib
from fjft.data.report import format_report
from fjft.data.splits import load_classification_splits
from fjft.errors import FjftError
from fjft.training.logging import RunLogger
from fjft.training.loop import train_loop
from fjft.models import registry
from fjft.training.state import open_run, place_params, prepare_training
from fjft.training.step import make_eval_step
from fjft.tasks.classify import model as classify
from fjft.models.tokenizer import Tokenizer


def run(config, workdir: str, *, rerun: bool = False, say=print) -> dict:
  """Trains (or resumes) the run of `config` under `workdir`; returns its results."""
  run_dir, finished, mesh = open_run(config, workdir, rerun, say)
  if finished is not None:
    return finished
  started = time.time()
  rules = config.sharding_rules

  splits = load_classification_splits(config.data)
  say(format_report(splits.report))
  rundir.write_json(os.path.join(run_dir, "data_report.json"), splits.report)
  label_index = {label: i for i, label in enumerate(splits.labels)}
  num_labels = len(splits.labels)

  family, model_path = registry.resolve(config.model.name)
  tokenizer = Tokenizer.from_dir(model_path)
  if jax.process_index() == 0:
    tokenizer.save(os.path.join(run_dir, "tokenizer"))
  encoded = {
      name: batches_lib.encode([e.text for e in exs], [label_index[e.label] for e in exs],
                               tokenizer, config.data.max_length)
      for name, exs in (("train", splits.train), ("dev", splits.dev), ("test", splits.test))}

  baseline = _baseline(config, splits, label_index, num_labels, run_dir)

  model, hf_config = build_model(config, family, model_path, num_labels)
  rundir.write_json(os.path.join(run_dir, "model.json"), {
      "family": hf_config["model_type"], "hf_config": hf_config, "labels": splits.labels,
      "max_length": config.data.max_length, "buckets": list(config.data.buckets),
      "compute_dtype": config.model.compute_dtype, "pooling": config.model.pooling,
      "peft_structure": adapters.structure(config)})
  graphdef, params = nnx.split(model)
  params = place_params(params, mesh, rules, say)

  apply_fn = make_apply_fn(graphdef, config.model.compute_dtype)
  training = prepare_training(config, params, run_dir, apply_fn, classify.loss_fn, say, mesh,
                              only=adapters.trainable_regex(config, new=classify.HEAD_PATTERN))
  state, checkpoints = training.state, training.checkpoints
  # Outputs replicated: every host reads the whole batch's predictions.
  eval_step = jax.jit(make_eval_step(apply_fn, classify.predict_fn),
                      out_shardings=mesh_lib.replicated(mesh))

  train_batches = batches_lib.TrainBatches(encoded["train"], config.train.batch_size,
                                           config.data.buckets, tokenizer.pad_id, config.seed)

  def to_device(batch):
    return mesh_lib.global_batch(batch, mesh, rules)

  def evaluate(params, split="dev"):
    probs = per_example_outputs(eval_step, params, encoded[split], config.train.eval_batch_size,
                          config.data.buckets, tokenizer.pad_id, to_device)
    return classify.metrics(encoded[split].labels, probs.argmax(-1), num_labels)

  logger = RunLogger(run_dir, config.train.steps, int(state.step), config.train.progress)
  logger.text("config", "```\n" + config_lib.canonical_json(config, identity_only=False) + "\n```")
  # The baseline as flat lines over the whole run, to read the dev curves against.
  for split, values in baseline.items():
    for at in (0, config.train.steps):
      logger.scalars(at, values, f"baseline/{split}/")
  say(f"model {config.model.name}: {adapters.describe_counts(training.params)}, {num_labels} labels; "
      f"training {config.train.steps} steps of {config.train.batch_size} examples")
  try:
    result = train_loop(
        state=state, train_step=training.train_step,
        batch_at=lambda s: to_device(train_batches.batch(s)),
        data_position=train_batches.position, evaluate=evaluate, checkpoints=checkpoints,
        logger=logger, train_cfg=config.train, lr_at=training.lr_at,
        loop_state=training.loop_state)
    if result.interrupted:
      raise SystemExit(130)
    best_step, best_params = restore_best_params(run_dir, abstract_like(result.state.params))
    dev = evaluate(best_params, "dev")
    results = {
        "config_hash": config_lib.config_hash(config),
        "run_dir": os.path.abspath(run_dir),
        "step": int(result.state.step),
        "best_step": int(best_step),
        "stopped": result.loop_state.stopped,
        "dev": dev,
        "baseline": baseline,
        "history": result.loop_state.history,
        "train_loss": result.loop_state.train_loss,
        "params": training.params,
        "train_examples_per_s": (result.steps_run * config.train.batch_size
                                 / max(result.train_seconds, 1e-9)),
        "wall_seconds": time.time() - started,
    }
    if len(encoded["test"]):
      results["test"] = evaluate(best_params, "test")
    logger.hparams(hparams(config), {f"dev_{k}": v for k, v in dev.items()})
    results_file = rundir.results_path(run_dir)
    rundir.write_json(results_file, results)
  finally:
    logger.close()
    checkpoints.close()
  say(summary(config, results, results_file))
  return results


def build_model(config, family, model_path: str, num_labels: int):
  """Pretrained encoder (with config.peft's adapters) + new classification head (seeded by
  config.seed)."""
  enc_cfg, encoder = family.from_hf(model_path)
  enc_cfg = dataclasses.replace(enc_cfg, hidden_dropout=config.model.hidden_dropout,
                                attention_dropout=config.model.attention_dropout,
                                attention_impl=config.model.attention_impl or None)
  encoder.cfg = enc_cfg
  adapters.apply(encoder, adapters.structure(config), config.seed)
  model = classify.Classifier(encoder, enc_cfg.hidden_size, num_labels,
                              config.model.classifier_dropout, rngs=nnx.Rngs(config.seed),
                              pooling=config.model.pooling)
  head = adapters.load_initial(encoder, family.hf_linear_names(enc_cfg), config)
  if head:   # the adapter's trained head (PEFT's modules_to_save)
    classify.set_head(model, head, config.peft.init_from)
  return model, enc_cfg.to_hf()


def make_apply_fn(graphdef, compute_dtype: str):
  dtype = jnp.dtype(compute_dtype)

  def apply_fn(params, batch, dropout_key):
    model = nnx.merge(graphdef, params)
    return model(batch["input_ids"], batch["attention_mask"], dropout_key=dropout_key,
                 compute_dtype=dtype)

  return apply_fn


def per_example_outputs(eval_step, params, enc, batch_size: int, buckets, pad_id: int,
                  to_device=lambda batch: batch) -> np.ndarray:
  """eval_step's row for every example of `enc` (class probabilities, embeddings), as
  float32 [len(enc), ...] in the examples' original order."""
  if not len(enc):
    raise FjftError("nothing to predict: no examples")
  out = None
  for idx, batch in batches_lib.eval_batches(enc, batch_size, buckets, pad_id):
    rows = np.asarray(jax.device_get(eval_step(params, to_device(batch))))
    if out is None:
      out = np.zeros((len(enc),) + rows.shape[1:], np.float32)
    out[idx] = rows[:len(idx)]
  return out


def _baseline(config, splits, label_index, num_labels, run_dir) -> dict:
  """TF-IDF + logistic regression on the same split (cached in the run dir for resumes)."""
  path = os.path.join(run_dir, "baseline.json")
  if os.path.isfile(path):
    return rundir.read_json(path)
  lab = lambda exs: [label_index[e.label] for e in exs]
  out = baseline_lib.tfidf_logreg(
      [e.text for e in splits.train], lab(splits.train),
      {"dev": ([e.text for e in splits.dev], lab(splits.dev)),
       "test": ([e.text for e in splits.test], lab(splits.test))},
      num_labels, config.baseline, config.seed)
  rundir.write_json(path, out)
  return out


def hparams(config) -> dict:
  return {key: config_lib.get_field(config, key) for key in config_lib.flat_keys(config)}


def summary(config, results: dict, results_file: str) -> str:
  metric = config.train.metric
  lines = [f"done: {results['step']} steps, best dev {metric} at step {results['best_step']}"]
  for split in ("dev", "test"):
    if split in results:
      ft, base = results[split][metric], results["baseline"].get(split, {}).get(metric)
      line = f"  {split:4s} {metric}: fine-tuned {ft:.4f}"
      if base is not None:
        line += f" vs baseline (TF-IDF + logistic regression) {base:.4f} ({ft - base:+.4f})"
      lines.append(line)
  lines.append(f"results: {results_file}")
  lines.append(f"tensorboard --logdir {os.path.dirname(results_file)}/tb")
  run = os.path.dirname(results_file)
  lines.append(f"predict: python -m fjft.predict --run={run} --input=<file> --output=<out.jsonl>")
  if config.model.pooling == "pooler":   # the only head HF's classifier classes have
    lines.append(f"export:  python -m fjft.export --run={run} --out=<dir>")
  return "\n".join(lines)
