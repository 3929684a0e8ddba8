"""Preference tuning (DPO, IPO, SimPO, ORPO) of a pretrained decoder on chosen/rejected
reply pairs, against the starting model's own preference, a TF-IDF preference model and
"the shorter reply wins"; dev preference accuracy picks the checkpoint.

The reference model of DPO and IPO (loss.reference):
  adapters_off  a LoRA run's base model, computed in the same step with every adapter's
                B set to 0: no second copy of the weights, one more forward pass a step;
  precompute    the starting model's log-probs of every pair, computed once before the
                first step and kept in the run dir (reference_logps.json): a full
                fine-tune needs no frozen copy and no extra forward pass;
  frozen_copy   a copy of the starting weights on the devices, a train-step input
                (TaskRun.frozen_inputs): one more forward pass a step and a copy's memory,
                nothing computed over the train set up front (a run that sees a small part
                of a large set; dev and test are scored once for the baseline, as always).
A finished run is a decoder like an LM run's: generate and export open it the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.data.batches import StepBatches, fill_rows, row_weights
from fjft.errors import ConfigError
from fjft.models import adapters
from fjft.models.pretrained import LM, load_lm
from fjft.parallel import mesh as mesh_lib
from fjft.tasks.base import BestByStep, RunContext, check_metric
from fjft.tasks.lm.task import (LMRun, LMTask, build_model, finish_with_samples,
                                generate_and_score, generation_metrics, prompts_and_references)
from fjft.tasks.preference import baseline as pref_baseline
from fjft.tasks.preference import data as pref_data
from fjft.tasks.preference import loss as pref_loss
from fjft.tasks.preference.config import BOUNDS, LOSS_KINDS, REFERENCES, default_config

METRICS = ("accuracy", "margin", "loss", "chosen_logps", "rejected_logps", "logratio")


@dataclasses.dataclass
class PairRows:
  """Pairs as fixed-length rows [N, 2, L] (chosen, rejected) and reference log-probs."""
  input_ids: np.ndarray
  loss_mask: np.ndarray
  positions: np.ndarray
  segment_ids: np.ndarray
  ref_logps: np.ndarray     # float32 [N, 2], filled when precomputed

  def __len__(self) -> int:
    return len(self.input_ids)

  def take(self, idx: np.ndarray, size: int) -> dict:
    out = {k: fill_rows(getattr(self, k), idx, size)
           for k in ("input_ids", "loss_mask", "positions", "segment_ids", "ref_logps")}
    out["weight"] = row_weights(len(idx), size)
    return out


def pair_rows(pairs, length: int, pad_id: int) -> PairRows:
  n = len(pairs)
  rows = PairRows(np.full((n, 2, length), pad_id, np.int32), np.zeros((n, 2, length), bool),
                  np.zeros((n, 2, length), np.int32), np.zeros((n, 2, length), np.int32),
                  np.zeros((n, 2), np.float32))
  for i, pair in enumerate(pairs):
    for side in (0, 1):
      k = len(pair.ids[side])
      rows.input_ids[i, side, :k] = pair.ids[side]
      rows.loss_mask[i, side, :k] = pair.mask[side]
      rows.positions[i, side, :k] = np.arange(k)
      rows.segment_ids[i, side, :k] = 1
  return rows


class PairBatches(StepBatches):
  def __init__(self, rows: PairRows, batch_size: int, seed: int):
    super().__init__(len(rows), batch_size, seed)
    self.rows = rows

  def batch(self, step: int) -> dict:
    return self.rows.take(self.shuffled(step), self.batch_size)


def reference_mode(config) -> str:
  """What the reference model is for this run's loss: "adapters_off", "precompute", or
  "none" (SimPO, ORPO)."""
  ref, lora = config.loss.reference, config.peft.method == "lora"
  if config.loss.kind not in LOSS_KINDS:
    raise ConfigError(f"config field loss.kind must be one of {', '.join(LOSS_KINDS)}, got "
                      f"{config.loss.kind!r}")
  if ref not in REFERENCES:
    raise ConfigError(f"config field loss.reference must be one of {', '.join(REFERENCES)}, "
                      f"got {ref!r}")
  if config.loss.kind not in pref_loss.WITH_REFERENCE:
    return "none"
  if ref == "adapters_off" and not lora:
    raise ConfigError("config field loss.reference='adapters_off' needs a LoRA run "
                      "(peft.method='lora'): a full fine-tune has no adapters to switch off; "
                      "use 'precompute'")
  return ("adapters_off" if lora else "precompute") if ref == "auto" else ref


def pair_logps(graphdef, params, batch: dict, dropout_key, dtype) -> tuple[jax.Array, jax.Array]:
  """(summed log-probs, token counts) of each pair's replies [B, 2], from rows [B, 2, L]."""
  flat = {k: batch[k].reshape((-1,) + batch[k].shape[2:])
          for k in ("input_ids", "positions", "segment_ids", "loss_mask")}
  features = nnx.merge(graphdef, params).features(
      flat["input_ids"], flat["positions"], segment_ids=flat["segment_ids"],
      dropout_key=dropout_key, compute_dtype=dtype)
  logps, counts = pref_loss.sequence_logps(features, flat["input_ids"], flat["loss_mask"])
  return logps.reshape(-1, 2), counts.reshape(-1, 2)


def without_adapters(params):
  """The params with every LoRA B zeroed: the adapted model computes its base exactly."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.zeros_like(x) if any(
          getattr(k, "key", None) == "lora_b" for k in path) else x, params)


class PreferenceRun:

  def __init__(self, ctx: RunContext):
    config = self.config = ctx.config
    self.reference = reference_mode(config)
    self.metric_names = generation_metrics(config)
    check_metric(config, METRICS + tuple(self.metric_names if config.eval.generate else ()))
    m = config.model
    self.lm = load_lm(m.name, mesh=ctx.mesh, rules=config.sharding_rules,
                      scan_layers=m.scan_layers, remat=m.remat,
                      attention_impl=m.attention_impl or None)
    self.family = self.lm.cfg.to_hf()["model_type"]
    self.splits, self.tokenizer = pref_data.load_splits(config.data, self.lm.tokenizer, m.name)
    ctx.report(self.splits.report)
    self.rows = {name: pair_rows(getattr(self.splits, name), config.data.max_length,
                                 self.tokenizer.pad_id) for name in ("train", "dev", "test")}
    self.info = {"hf_config": self.lm.cfg.to_hf(), "source": self.lm.source,
                 "runtime": {"scan_layers": m.scan_layers, "remat": m.remat}}
    self.model = build_model(config, self.lm)
    self.lm = dataclasses.replace(self.lm, params=None)
    self.trainable = adapters.trainable_regex(config)
    self.to_device, self.mesh, self.say = ctx.to_device, ctx.mesh, ctx.say
    self.reference_cost = {"reference": self.reference, "reference_weight_bytes": 0}
    # the best dev evaluation's scores: not computed again for the best checkpoint
    self.best_dev = BestByStep(config.train.metric)
    self.prompts, self.samples = {}, {}
    if self.metric_names and config.eval.generate:
      # rendered again, uncut: a reply is generated from the whole prompt and scored
      # against the whole chosen reply (the pairs' rows keep only the end of a long prompt)
      room = types.SimpleNamespace(
          use_chat_template=config.data.use_chat_template,
          max_length=self.lm.cfg.max_position_embeddings - config.eval.max_new_tokens)
      self.prompts = {split: prompts_and_references(
          [pref_data.encode(self.tokenizer, p, room)[0].chosen_example()
           for p in self.splits.texts[split][:config.eval.generate]],
          self.tokenizer) for split in ("dev", "test")}

  def apply_fn(self, graphdef):
    self.graphdef = graphdef
    dtype = jnp.dtype(self.config.model.compute_dtype)
    in_step = self.reference == "adapters_off"

    def logps_of(params, batch, key):
      return pair_logps(graphdef, params, batch, key, dtype)

    def make(in_step: bool):
      def apply_fn(params, batch, dropout_key):
        logps, counts = logps_of(params, batch, dropout_key)
        out = {"logps": logps, "counts": counts, "ref_logps": batch["ref_logps"]}
        if in_step:
          out["ref_logps"] = jax.lax.stop_gradient(
              logps_of(without_adapters(params), batch, None)[0])
        elif "frozen" in batch:   # frozen_copy: the starting params, a step input
          out["ref_logps"] = jax.lax.stop_gradient(logps_of(batch["frozen"], batch, None)[0])
        return out
      return apply_fn

    replicated = mesh_lib.replicated(self.mesh)
    self._logps = jax.jit(lambda p, batch: logps_of(p, batch, None), out_shardings=replicated)
    # Dev and test: the base's log-probs are the starting model's, computed once for the
    # baseline, unless the adapters started from peft.init_from (then the base is not it).
    eval_in_step = in_step and bool(self.config.peft.init_from)
    def eval_fn(params, batch):
      out = make(eval_in_step)(params, batch, None)
      return out, self._losses(out)

    self._eval = jax.jit(eval_fn, out_shardings=replicated)
    self._eval_uses_start = not eval_in_step
    return make(in_step)

  def _losses(self, out):
    c = self.config.loss
    ref = out["ref_logps"] if c.kind in pref_loss.WITH_REFERENCE else None
    return pref_loss.pair_losses(c.kind, out["logps"], out["counts"], ref, beta=c.beta,
                                 label_smoothing=c.label_smoothing, simpo_gamma=c.simpo_gamma)

  def loss_fn(self, out, batch):
    losses, _ = self._losses(out)
    return jnp.sum(losses * batch["weight"]), jnp.sum(batch["weight"])

  def batches(self):
    return PairBatches(self.rows["train"], self.config.train.batch_size, self.config.seed)

  def _batches(self, split: str):
    rows, size = self.rows[split], self.config.train.eval_batch_size
    for start in range(0, len(rows), size):
      idx = np.arange(start, min(start + size, len(rows)))
      yield idx, self.to_device(rows.take(idx, size))

  def _starting_logps(self, params, split: str) -> np.ndarray:
    out = np.zeros((len(self.rows[split]), 2), np.float64)
    for idx, batch in self._batches(split):
      out[idx] = np.asarray(jax.device_get(self._logps(params, batch)[0]))[:len(idx)]
    return out

  def baselines(self, ctx: RunContext, params) -> dict:
    splits = ("train", "dev", "test") if self.reference == "precompute" else ("dev", "test")
    fingerprint = hashlib.sha256(b"".join(
        self.rows[s].input_ids.tobytes() + self.rows[s].loss_mask.tobytes()
        for s in splits)).hexdigest()

    def compute():
      self.say(f"log-probs of the starting model on {', '.join(splits)} (the reference"
               f"{' and' if self.reference == 'precompute' else ''} baseline)")
      started = time.time()
      out = {s: self._starting_logps(params, s).tolist() for s in splits}
      return {"fingerprint": fingerprint, "seconds": time.time() - started, **out}

    start = ctx.cached("reference_logps.json", compute)
    if start.get("fingerprint") != fingerprint:   # the data changed under the same run dir
      start = compute()
      ctx.write("reference_logps.json", start)
    if self.reference == "frozen_copy":
      # a copy (the train step donates the params it is given), kept on the same devices
      self._frozen = jax.tree.map(lambda x: x.copy(), params)
      self.reference_cost["reference_weight_bytes"] = sum(
          x.nbytes for x in jax.tree.leaves(self._frozen))
    if self.reference in ("precompute", "frozen_copy") or (self.reference == "adapters_off"
                                                           and self._eval_uses_start):
      for s in splits:
        self.rows[s].ref_logps[:] = np.asarray(start[s], np.float32)
    if self.reference == "precompute":
      self.reference_cost.update(reference_logps_bytes=sum(self.rows[s].ref_logps.nbytes
                                                            for s in splits),
                                 reference_seconds=start["seconds"])
    pretrained = {s: pref_baseline.logprob_preference(np.asarray(start[s]))
                  for s in ("dev", "test")}
    if self.prompts:
      def generated():
        self.say("generating with the starting model on dev and test (the baseline)")
        out = {s: self._generate(params, s) for s in ("dev", "test")}
        ctx.write("baseline_generations.json", self.samples)
        return out
      for s, scores in ctx.cached("baseline_generation.json", generated).items():
        pretrained[s].update(scores)

    def text_baselines():
      return pref_baseline.text_baselines(self.splits.texts)
    return {"pretrained": pretrained, **ctx.cached("baseline.json", text_baselines)}

  def frozen_inputs(self):
    """The frozen copy of the starting params the train step computes the reference with."""
    return getattr(self, "_frozen", None)

  def _generate(self, params, split: str) -> dict:
    lm = LM(self.lm.family, self.lm.cfg, self.graphdef, params, self.tokenizer, self.lm.source)
    scores, self.samples[split] = generate_and_score(lm, self.prompts[split], self.config.eval,
                                                     self.metric_names)
    return scores

  def evaluate(self, params, split: str, step: int | None = None) -> dict:
    out = self._evaluate(params, split)
    if split == "dev":
      self.best_dev.offer(step, out, (out, self.samples.get("dev")))
    return out

  def _evaluate(self, params, split: str) -> dict:
    sums = dict.fromkeys(METRICS, 0.0)
    for idx, batch in self._batches(split):
      out, (losses, rewards) = jax.device_get(self._eval(params, batch))
      n = len(idx)
      logps, ref = np.asarray(out["logps"])[:n], np.asarray(out["ref_logps"])[:n]
      rewards, losses = rewards[:n], losses[:n]
      sums["accuracy"] += float(np.sum(rewards[:, 0] > rewards[:, 1]))
      sums["margin"] += float(np.sum(rewards[:, 0] - rewards[:, 1]))
      sums["loss"] += float(np.sum(losses))
      sums["chosen_logps"] += float(np.sum(logps[:, 0]))
      sums["rejected_logps"] += float(np.sum(logps[:, 1]))
      if self.reference != "none":
        sums["logratio"] += float(np.sum(logps - ref)) / 2
    out = {k: v / len(self.rows[split]) for k, v in sums.items()}
    if self.reference == "none":
      del out["logratio"]
    if split in self.prompts:
      out.update(self._generate(params, split))
    return out

  def finish(self, ctx: RunContext, params, best_step: int) -> dict:
    return finish_with_samples(self, ctx, params, best_step, self._evaluate)

  def describe(self, counts: dict) -> str:
    c = self.config
    return (f"model {c.model.name}: {adapters.describe_counts(counts)}; {c.loss.kind} "
            f"(beta {c.loss.beta:g}, reference: {self.reference}); {c.train.steps} steps of "
            f"{c.train.batch_size} pairs x 2 x {c.data.max_length} tokens "
            f"({len(self.rows['train'])} pairs per epoch)")

  def summary(self, results: dict) -> list[str]:
    lines = []
    for split in ("dev", "test"):
      acc = results[split]["accuracy"]
      others = ", ".join(f"{name} {results[name][split]['accuracy']:.4f}"
                         for name in ("pretrained", "tfidf", "shorter") if name in results)
      lines.append(f"  {split:4s} preference accuracy: tuned {acc:.4f} vs {others}")
    return lines

  # a finished run is a decoder: generated from and exported as an LM run is
  commands = LMRun.commands

  def extra_results(self, results: dict) -> dict:
    return dict(self.reference_cost)


class PreferenceTask(LMTask):
  """A decoder tuned on preference pairs; opened, generated from and exported as an LM run,
  and it scores pairs of replies (predict)."""
  name = "preference"
  uses = {**LMTask.uses, "predict": "python -m fjft.predict"}
  report_lines = staticmethod(pref_data.report_lines)
  default_config = staticmethod(default_config)
  bounds = BOUNDS
  run_class = PreferenceRun

  def predict(self, run, input_path: str, output_path: str, **options) -> list[str]:
    """`python -m fjft.predict`: which of two replies the run prefers (fjft.tasks.preference.use)."""
    from fjft.tasks.preference import use
    return use.predict_file(run, input_path, output_path, **options)


TASK = PreferenceTask()
