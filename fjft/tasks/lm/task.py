"""Causal-LM fine-tuning: next-token cross-entropy on the trained tokens (chunked over the
vocabulary), perplexity and optional generation metrics on dev and test, against the same
pretrained model before fine-tuning, scored on the same splits."""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.data import packing
from fjft.errors import ConfigError
from fjft.metrics import text as gen_metrics
from fjft.models import adapters, decoding, generation, registry
from fjft.models.pretrained import LM, load_lm
from fjft.models.tokenizer import Tokenizer
from fjft.parallel import mesh as mesh_lib
from fjft.run import opened
from fjft.tasks.base import BestByStep, RunContext, TaskBase, check_metric
from fjft.tasks.lm import data as lm_data
from fjft.tasks.lm import loss as lm_loss
from fjft.tasks.lm.config import BOUNDS, default_config


def build_model(config, lm: LM) -> nnx.Module:
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


def prompts_and_references(examples, tokenizer):
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


def generation_metrics(config) -> list[str]:
  """The metrics of config.eval.metrics, checked: scored when eval.generate is set."""
  names = [m for m in config.eval.metrics.split(",") if m]
  for name in names:
    if name not in gen_metrics.METRICS:
      raise ConfigError(f"config field eval.metrics: unknown metric {name!r} "
                        f"(known: {', '.join(gen_metrics.METRICS)})")
  if config.eval.generate and not names:
    raise ConfigError(f"config field eval.generate={config.eval.generate} generates replies "
                      f"to score, but eval.metrics names none (one or more of "
                      f"{', '.join(gen_metrics.METRICS)}, comma-separated)")
  return names


def generate_and_score(lm: LM, prompts, eval_cfg, metric_names) -> tuple[dict, list[dict]]:
  """(metric -> score, the samples) of greedy replies to `prompts` (prompts_and_references)."""
  ids, references, where = prompts
  sampling = decoding.SamplingConfig(max_new_tokens=eval_cfg.max_new_tokens, temperature=0.0)
  generated = generation.generate_batched(lm, ids, where, eval_cfg.batch_size, sampling,
                                          always_full=True)
  hypotheses = [lm.tokenizer.decode(g).strip() for g in generated]
  return gen_metrics.score(metric_names, hypotheses, references), [
      {"where": w, "reference": r, "generated": h}
      for w, r, h in zip(where, references, hypotheses)]


def finish_with_samples(run, ctx: RunContext, params, best_step: int, score) -> dict:
  """The best checkpoint's dev scores (kept from its evaluation by run.best_dev, with the
  replies it generated) and test scores (score(params, split)); run.samples, what it
  generated on dev and test, written to generations.json."""
  kept = run.best_dev.at(best_step)
  if kept is not None:
    dev, replies = kept
    if replies is not None:
      run.samples["dev"] = replies
  else:   # the best step was evaluated before a resume
    dev = score(params, "dev")
  out = {"dev": dev, "test": score(params, "test")}
  if run.samples:
    ctx.write("generations.json", run.samples)
  return out


class LMRun:

  def __init__(self, ctx: RunContext):
    config = self.config = ctx.config
    self.metric_names = generation_metrics(config)
    check_metric(config, ["loss", "perplexity"]
                 + (self.metric_names if config.eval.generate else []))
    m = config.model
    # each weight goes from the file straight to its shard of the mesh
    self.lm = load_lm(m.name, mesh=ctx.mesh, rules=config.sharding_rules,
                      scan_layers=m.scan_layers, remat=m.remat,
                      attention_impl=m.attention_impl or None)
    self.tokenizer = lm_data.chat_tokenizer(config.data, self.lm.tokenizer, m.name)
    self.family = self.lm.cfg.to_hf()["model_type"]
    self.splits = splits = lm_data.load_lm_splits(config.data, self.tokenizer)
    ctx.report(splits.report)
    arrange = packing.pack if config.data.pack else packing.one_per_row
    self.rows = {name: arrange(getattr(splits, name), config.data.max_length,
                               self.tokenizer.pad_id) for name in ("train", "dev", "test")}
    self.info = {"hf_config": self.lm.cfg.to_hf(), "source": self.lm.source,
                 # the parameter layout depends on these (scanned layers are stacked)
                 "runtime": {"scan_layers": m.scan_layers, "remat": m.remat}}
    self.model = build_model(config, self.lm)
    # the params live on in self.model only (the runner places them and lets go of them)
    self.lm = dataclasses.replace(self.lm, params=None)
    self.trainable = adapters.trainable_regex(config)
    self.prompts = {}
    if self.metric_names and config.eval.generate:
      self.prompts = {split: prompts_and_references(getattr(splits, split)[:config.eval.generate],
                                                    self.tokenizer) for split in ("dev", "test")}
    self.to_device, self.mesh, self.say = ctx.to_device, ctx.mesh, ctx.say
    self.samples: dict[str, list] = {}    # what the last evaluation of each split generated
    # the best dev evaluation's scores and replies: the best checkpoint's are then not
    # generated again at the end (minutes on a CPU)
    self.best_dev = BestByStep(config.train.metric)

  def apply_fn(self, graphdef):
    self.graphdef = graphdef
    apply_fn = make_apply_fn(graphdef, self.config.model.compute_dtype)
    self.eval_step = jax.jit(lambda p, batch: loss_fn(apply_fn(p, batch, None), batch),
                             out_shardings=mesh_lib.replicated(self.mesh))
    return apply_fn

  def loss_fn(self, features, batch):
    return loss_fn(features, batch)

  def batches(self):
    return packing.RowBatches(self.rows["train"], self.config.train.batch_size, self.config.seed)

  def _score(self, params, split: str) -> dict:
    total = count = 0.0
    for batch in packing.eval_batches(self.rows[split], self.config.train.eval_batch_size):
      loss, n = jax.device_get(self.eval_step(params, self.to_device(batch)))
      total, count = total + float(loss), count + float(n)
    mean = total / max(count, 1.0)
    out = {"loss": mean, "perplexity": math.exp(min(mean, 50.0))}
    if split in self.prompts:
      lm = LM(self.lm.family, self.lm.cfg, self.graphdef, params, self.tokenizer, self.lm.source)
      scores, self.samples[split] = generate_and_score(lm, self.prompts[split], self.config.eval,
                                                       self.metric_names)
      out.update(scores)
    return out

  def baselines(self, ctx: RunContext, params) -> dict:
    def zero_shot():
      self.say("scoring the pretrained model (the baseline) on dev and test")
      out = {split: self._score(params, split) for split in ("dev", "test")}
      if self.samples:
        ctx.write("baseline_generations.json", self.samples)
      return out
    return {"baseline": ctx.cached("baseline.json", zero_shot)}

  def evaluate(self, params, split: str, step: int | None = None) -> dict:
    out = self._score(params, split)
    self.best_dev.offer(step, out, (out, self.samples.get(split)))
    return out

  def finish(self, ctx: RunContext, params, best_step: int) -> dict:
    return finish_with_samples(self, ctx, params, best_step, self._score)

  def describe(self, counts: dict) -> str:
    c = self.config
    return (f"model {c.model.name}: {adapters.describe_counts(counts)}; training "
            f"{c.train.steps} steps of {c.train.batch_size} rows x {c.data.max_length}"
            f" tokens ({len(self.rows['train'])} rows per epoch)")

  def summary(self, results: dict) -> list[str]:
    metric, lines = self.config.train.metric, []
    for split in ("dev", "test"):
      ft, base = results[split][metric], results["baseline"][split][metric]
      lines.append(f"  {split:4s} {metric}: fine-tuned {ft:.4f} vs pretrained zero-shot "
                   f"{base:.4f} ({(ft - base) / base:+.1%})")
      for name in gen_metrics.METRICS:
        if name in results[split] and name != metric:
          lines.append(f"  {split:4s} {name}: fine-tuned {results[split][name]:.2f} vs "
                       f"pretrained zero-shot {results['baseline'][split][name]:.2f}")
    return lines

  def commands(self, run_dir: str) -> list[str]:
    return [f"generate: python -m fjft.generate --run={run_dir} --prompt=\"...\" "
            "--output=<out.jsonl>",
            f"export:   python -m fjft.export --run={run_dir} --out=<dir>"]

  def extra_results(self, results: dict) -> dict:
    return {"train_tokens_per_s": results["train_examples_per_s"] * self.config.data.max_length}


class LMTask(TaskBase):
  name = "lm"
  uses = {"generate": "python -m fjft.generate", "export": "python -m fjft.export"}
  report_lines = staticmethod(lm_data.report_lines)

  default_config = staticmethod(default_config)
  bounds = BOUNDS
  run_class = LMRun

  def plan_model(self, config):
    lm = load_lm(config.model.name, scan_layers=config.model.scan_layers)
    return build_model(config, lm), adapters.trainable_regex(config)

  def open_run(self, run_dir: str, info: dict, config: dict, *, merge: bool = True) -> LM:
    """The best checkpoint of a fine-tuned decoder, ready to generate: the architecture
    from model.json, the tokenizer from tokenizer/, the weights from checkpoints/best."""
    family = registry.family_module(info["family"])
    cfg = family.Config.from_hf(info["hf_config"], **info.get("runtime", {}))
    structure = info.get("peft_structure")
    graphdef, params, best_step = opened.restore(
        run_dir, lambda: adapters.apply(family.Model(cfg, rngs=nnx.Rngs(0)), structure),
        structure, merge)
    tokenizer = Tokenizer.from_dir(os.path.join(run_dir, "tokenizer"))
    del best_step   # an LM is named by its source: the run directory
    return LM(family, cfg, graphdef, params, tokenizer, os.path.abspath(run_dir))

  def exports(self) -> dict:
    from fjft.tasks.lm import export
    return {"hf": export.export_hf, "peft": export.export_peft}


TASK = LMTask()
