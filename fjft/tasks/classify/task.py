"""Sequence classification: a pretrained encoder with a new linear head, cross-entropy,
accuracy and macro-F1 on dev and test, against TF-IDF + logistic regression on the same
split."""

from __future__ import annotations

import jax
from flax import nnx

from fjft.data import batches as batches_lib
from fjft.models import adapters, encoders
from fjft.parallel import mesh as mesh_lib
from fjft.tasks.base import EncoderTask, RunContext, check_metric
from fjft.tasks.classify import baseline as baseline_lib
from fjft.tasks.classify import data as classify_data
from fjft.tasks.classify import model as classify
from fjft.tasks.classify.config import BOUNDS, default_config
from fjft.training.outputs import per_example_outputs
from fjft.training.step import make_eval_step


def build_model(config, encoder: encoders.Encoder, num_labels: int) -> classify.Classifier:
  """The pretrained encoder (with config.peft's adapters) + a new head seeded by config.seed,
  or the head of the PEFT adapter peft.init_from (its modules_to_save)."""
  model = classify.Classifier(encoder.module, encoder.cfg.hidden_size, num_labels,
                              config.model.classifier_dropout, rngs=nnx.Rngs(config.seed),
                              pooling=config.model.pooling,
                              dense=classify.dense_head(encoder.cfg.to_hf()))
  head = adapters.load_initial(encoder.module, encoder.family.hf_linear_names(encoder.cfg),
                               config)
  if head:
    classify.set_head(model, head, config.peft.init_from)
  return model


class ClassifyRun:

  def __init__(self, ctx: RunContext):
    config = self.config = ctx.config
    check_metric(config, ("accuracy", "macro_f1"))
    self.splits = classify_data.load_classification_splits(config.data)
    ctx.report(self.splits.report)   # before the model is read: data problems show first
    self.labels = self.splits.labels
    index = {label: i for i, label in enumerate(self.labels)}
    encoder = encoders.load(config, ctx.mesh)   # each weight straight to its shard
    self.tokenizer, self.family = encoder.tokenizer, encoder.model_type
    self.encoded = {
        split: batches_lib.encode([e.text for e in exs], [index[e.label] for e in exs],
                                  self.tokenizer, config.data.max_length)
        for split, exs in (("train", self.splits.train), ("dev", self.splits.dev),
                           ("test", self.splits.test))}
    self.model = build_model(config, encoder, len(self.labels))
    self.info = {"hf_config": encoder.cfg.to_hf(), "labels": self.labels,
                 "max_length": config.data.max_length, "buckets": list(config.data.buckets),
                 "pooling": config.model.pooling}
    self.trainable = adapters.trainable_regex(config, new=classify.HEAD_PATTERN)
    self.to_device, self.mesh = ctx.to_device, ctx.mesh

  def apply_fn(self, graphdef):
    apply_fn = encoders.make_apply_fn(graphdef, self.config.model.compute_dtype)
    # Outputs replicated: every host reads the whole batch's predictions.
    self.eval_step = jax.jit(make_eval_step(apply_fn, classify.predict_fn),
                             out_shardings=mesh_lib.replicated(self.mesh))
    return apply_fn

  def loss_fn(self, logits, batch):
    return classify.loss_fn(logits, batch)

  def batches(self):
    return batches_lib.TrainBatches(self.encoded["train"], self.config.train.batch_size,
                                    self.config.data.buckets, self.tokenizer.pad_id,
                                    self.config.seed)

  def baselines(self, ctx: RunContext, params) -> dict:
    del params   # the baseline does not use the pretrained model
    s, index = self.splits, {label: i for i, label in enumerate(self.labels)}
    lab = lambda exs: [index[e.label] for e in exs]
    return {"baseline": ctx.cached("baseline.json", lambda: baseline_lib.tfidf_logreg(
        [e.text for e in s.train], lab(s.train),
        {"dev": ([e.text for e in s.dev], lab(s.dev)),
         "test": ([e.text for e in s.test], lab(s.test))},
        len(self.labels), self.config.baseline, self.config.seed))}

  def evaluate(self, params, split: str, step: int | None = None) -> dict:
    del step   # scoring is cheap: nothing to keep for the final report
    enc = self.encoded[split]
    probs = per_example_outputs(self.eval_step, params, enc, self.config.train.eval_batch_size,
                                self.config.data.buckets, self.tokenizer.pad_id,
                                self.to_device)
    return classify.metrics(enc.labels, probs.argmax(-1), len(self.labels))

  def finish(self, ctx: RunContext, params, best_step: int) -> dict:
    out = {"dev": self.evaluate(params, "dev")}
    if len(self.encoded["test"]):
      out["test"] = self.evaluate(params, "test")
    return out

  def describe(self, counts: dict) -> str:
    c = self.config
    return (f"model {c.model.name}: {adapters.describe_counts(counts)}, {len(self.labels)} "
            f"labels; training {c.train.steps} steps of {c.train.batch_size} examples")

  def summary(self, results: dict) -> list[str]:
    metric, lines = self.config.train.metric, []
    for split in ("dev", "test"):
      if split in results:
        ft, base = results[split][metric], results["baseline"].get(split, {}).get(metric)
        line = f"  {split:4s} {metric}: fine-tuned {ft:.4f}"
        if base is not None:
          line += f" vs baseline (TF-IDF + logistic regression) {base:.4f} ({ft - base:+.4f})"
        lines.append(line)
    return lines

  def commands(self, run_dir: str) -> list[str]:
    lines = [f"predict: python -m fjft.predict --run={run_dir} --input=<file> "
             "--output=<out.jsonl>"]
    if self.config.model.pooling == "pooler":   # the only head HF's classifier classes have
      lines.append(f"export:  python -m fjft.export --run={run_dir} --out=<dir>")
    return lines

  def extra_results(self, results: dict) -> dict:
    return {}


def skeleton(info: dict) -> classify.Classifier:
  """The run's classifier with the right shapes, without reading pretrained weights."""
  encoder, cfg = encoders.skeleton(info)
  return classify.Classifier(encoder, cfg.hidden_size, len(info["labels"]), 0.0,
                             rngs=nnx.Rngs(0), pooling=info.get("pooling", "pooler"),
                             dense=classify.dense_head(info["hf_config"]))


class ClassifyTask(EncoderTask):
  name = "classify"
  uses = {"predict": "python -m fjft.predict", "export": "python -m fjft.export"}
  report_lines = staticmethod(classify_data.report_lines)

  default_config = staticmethod(default_config)
  bounds = BOUNDS
  run_class = ClassifyRun
  skeleton = staticmethod(skeleton)

  def plan_model(self, config):
    labels = classify_data.load_classification_splits(config.data).labels
    model = build_model(config, encoders.load(config), len(labels))
    return model, adapters.trainable_regex(config, new=classify.HEAD_PATTERN)


  def exports(self) -> dict:
    from fjft.tasks.classify import export
    return {"hf": export.export_hf, "peft": export.export_peft}

  def predict(self, run, input_path: str, output_path: str, **options) -> list[str]:
    """`python -m fjft.predict`: see fjft.tasks.classify.use.predict_file."""
    from fjft.tasks.classify import use
    return use.predict_file(run, input_path, output_path, **options)


TASK = ClassifyTask()
