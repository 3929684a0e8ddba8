"""One search fine-tuning run, top to bottom (config.task == "retrieval").

The same run directory, hashing, loop, checkpoints and TensorBoard logs as a
classification run (fjft.runner); what differs is the data (a corpus with judged queries,
fjft.data.ir_data), the model (the pretrained encoder's pooled output, no new parameters),
the loss (contrastive, in-batch negatives, fjft.tasks.retrieval) and the evaluation: every
held-out query searches the whole corpus, scored with nDCG@10, MRR@10, Recall@100 and MAP
against BM25 (`baseline`), the pretrained model (`zero_shot`) and, at the end, the
fine-tuned model fused with BM25 (`hybrid`).
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
from fjft.config import experiment as config_lib
from fjft.tasks.retrieval import embedding
from fjft.parallel import mesh as mesh_lib
from fjft.run import rundir
from fjft.tasks.retrieval.bm25 import BM25
from fjft.training.checkpoint import abstract_like, restore_best_params
from fjft.data import batches as batches_lib
from fjft.tasks.retrieval import data as ir_data
from fjft.tasks.retrieval.pairs import PairBatches
from fjft.errors import DataError
from fjft.training.logging import RunLogger
from fjft.training.loop import train_loop
from fjft.models import registry
from fjft.training.state import open_run, place_params, prepare_training
from fjft.tasks.classify.task import hparams
from fjft.tasks.retrieval.ranking import reciprocal_rank_fusion, top_k, top_k_of_scores
from fjft.tasks.retrieval import metrics as ir_metrics
from fjft.tasks.retrieval import model as retrieval
from fjft.models.tokenizer import Tokenizer


def run(config, workdir: str, *, rerun: bool = False, say=print) -> dict:
  """Trains (or resumes) the run of `config` under `workdir`; returns its results."""
  run_dir, finished, mesh = open_run(config, workdir, rerun, say)
  if finished is not None:
    return finished
  started = time.time()
  rules = config.sharding_rules

  data = ir_data.load_collection(config.data)
  say(ir_data.format_report(data.report))
  rundir.write_json(os.path.join(run_dir, "data_report.json"), data.report)

  family, model_path = registry.resolve(config.model.name)
  tokenizer = Tokenizer.from_dir(model_path)
  if jax.process_index() == 0:
    tokenizer.save(os.path.join(run_dir, "tokenizer"))
  model, enc_cfg = build_model(config, family, model_path)
  mode, normalize = model.mode, model.normalize
  d = config.data
  rundir.write_json(os.path.join(run_dir, "model.json"), {
      "task": "retrieval", "family": enc_cfg.to_hf()["model_type"], "hf_config": enc_cfg.to_hf(),
      "pooling": mode, "normalize": normalize, "compute_dtype": config.model.compute_dtype,
      "query_max_length": d.query_max_length, "query_buckets": list(d.query_buckets),
      "doc_max_length": d.doc_max_length, "doc_buckets": list(d.doc_buckets),
      "peft_structure": adapters.structure(config)})
  graphdef, params = nnx.split(model)
  params = place_params(params, mesh, rules, say)

  docs_enc = embedding.encode_texts(data.doc_texts, tokenizer, d.doc_max_length)
  train_docs_enc = docs_enc
  if 0 < d.train_doc_max_length < d.doc_max_length:
    train_docs_enc = embedding.encode_texts(data.doc_texts, tokenizer, d.train_doc_max_length)
  query_ids = list(data.queries)
  query_row = {q: i for i, q in enumerate(query_ids)}
  queries_enc = embedding.encode_texts([data.queries[q] for q in query_ids], tokenizer,
                                       d.query_max_length)
  bm25 = BM25(data.doc_texts, k1=config.baseline.k1, b=config.baseline.b)

  def to_device(batch):
    return mesh_lib.global_batch(batch, mesh, rules)

  embed_step = embedding.make_embed_step(graphdef, config.model.compute_dtype, mesh)
  eval_bs = config.train.eval_batch_size

  def embed_corpus(params) -> np.ndarray:
    return embedding.embed_encoded(embed_step, params, docs_enc, eval_bs, d.doc_buckets,
                                   tokenizer.pad_id, to_device)

  # each evaluated split's queries, encoded once
  split_enc = {}
  for split in ("dev", "test"):
    rows = [query_row[q] for q in data.split_queries(split)]
    split_enc[split] = batches_lib.Encoded(ids=[queries_enc.ids[i] for i in rows],
                                           labels=queries_enc.labels[rows])

  def rank(params, split, docs) -> dict[str, list[str]]:
    """Each query of `split` searches the corpus `docs` (its embeddings under `params`):
    {query id: doc ids, best first}."""
    qids = data.split_queries(split)
    queries = embedding.embed_encoded(embed_step, params, split_enc[split], eval_bs,
                                      d.query_buckets, tokenizer.pad_id, to_device)
    idx, _ = top_k(queries, docs, ir_metrics.RANK_DEPTH)
    return {q: [data.doc_ids[j] for j in row] for q, row in zip(qids, idx)}

  def bm25_rank(split) -> dict[str, list[str]]:
    qids = data.split_queries(split)
    idx, _ = top_k_of_scores(bm25.scores([data.queries[q] for q in qids]), ir_metrics.RANK_DEPTH)
    return {q: [data.doc_ids[j] for j in row] for q, row in zip(qids, idx)}

  # Corpus embeddings of each dev evaluation of this process: the best checkpoint holds the
  # params of one of them, so the final evaluation need not embed the corpus again (a
  # minute or more on a CPU).
  evaluated: list[tuple[dict, np.ndarray]] = []

  def evaluate(params, split="dev"):
    docs = embed_corpus(params)
    metrics = ir_metrics.evaluate(rank(params, split, docs), data.split_qrels(split))
    evaluated.append((metrics, docs))
    return metrics

  def evaluate_splits(params, docs=None) -> dict:
    docs = embed_corpus(params) if docs is None else docs
    return {s: ir_metrics.evaluate(rank(params, s, docs), data.split_qrels(s)) for s in splits}

  splits = [s for s in ("dev", "test") if data.split_queries(s)]
  baseline = _cached(run_dir, "baseline.json", lambda: {
      s: ir_metrics.evaluate(bm25_rank(s), data.split_qrels(s)) for s in splits})
  say("BM25 baseline: " + _line(baseline))
  zero_shot = _cached(run_dir, "zero_shot.json", lambda: evaluate_splits(params))
  say("pretrained model (zero-shot): " + _line(zero_shot))

  pairs = PairBatches(data, train_docs_enc, queries_enc, query_row, bm25, tokenizer.pad_id, config)

  def apply_fn(params, batch, dropout_key):
    m = nnx.merge(graphdef, params)
    q_key = d_key = None
    if dropout_key is not None:
      q_key, d_key = jax.random.split(dropout_key)
    dtype = jnp.dtype(config.model.compute_dtype)
    q = m(batch["q_ids"], batch["q_mask"], dropout_key=q_key, compute_dtype=dtype)
    docs = m(batch["d_ids"], batch["d_mask"], dropout_key=d_key, compute_dtype=dtype)
    return q, docs

  def loss_fn(out, batch):
    q, docs = out
    return retrieval.contrastive_loss(q, docs, batch, config.loss.temperature,
                                      config.loss.symmetric)

  training = prepare_training(config, params, run_dir, apply_fn, loss_fn, say, mesh,
                              only=adapters.trainable_regex(config))
  state, checkpoints = training.state, training.checkpoints

  logger = RunLogger(run_dir, config.train.steps, int(state.step), config.train.progress)
  logger.text("config", "```\n" + config_lib.canonical_json(config, identity_only=False) + "\n```")
  for name, values in (("baseline", baseline), ("zero_shot", zero_shot)):
    for split, metrics in values.items():
      for at in (0, config.train.steps):
        logger.scalars(at, metrics, f"{name}/{split}/")
  say(f"model {config.model.name}: {adapters.describe_counts(training.params)}, {mode} pooling"
      f"{', normalised' if normalize else ''}; training {config.train.steps} steps of "
      f"{config.train.batch_size} queries x {pairs.group} documents "
      f"({len(pairs.pairs)} training pairs)")
  try:
    result = train_loop(
        state=state, train_step=training.train_step,
        batch_at=lambda s: to_device(pairs.batch(s)),
        data_position=pairs.position, evaluate=evaluate, checkpoints=checkpoints,
        logger=logger, train_cfg=config.train, lr_at=training.lr_at,
        loop_state=training.loop_state)
    if result.interrupted:
      raise SystemExit(130)
    best_step, best_params = restore_best_params(run_dir, abstract_like(result.state.params))
    best_dev = next(h for h in result.loop_state.history if h["step"] == best_step)
    docs = next((docs for metrics, docs in evaluated
                 if all(best_dev[k] == v for k, v in metrics.items())), None)
    if docs is None:  # the best step was evaluated before a resume
      docs = embed_corpus(best_params)
    out: dict = {"dev": {}, "test": {}, "hybrid": {}}
    for s in splits:
      ranked = rank(best_params, s, docs)
      out[s] = ir_metrics.evaluate(ranked, data.split_qrels(s))
      lexical = bm25_rank(s)
      fused = {q: reciprocal_rank_fusion([ranked[q], lexical[q]], config.eval.fusion_k,
                                         ir_metrics.RANK_DEPTH) for q in ranked}
      out["hybrid"][s] = ir_metrics.evaluate(fused, data.split_qrels(s))
    results = {
        "config_hash": config_lib.config_hash(config),
        "run_dir": os.path.abspath(run_dir),
        "step": int(result.state.step),
        "best_step": int(best_step),
        "stopped": result.loop_state.stopped,
        "dev": out["dev"],
        "baseline": baseline,
        "zero_shot": zero_shot,
        "hybrid": out["hybrid"],
        "history": result.loop_state.history,
        "train_loss": result.loop_state.train_loss,
        "params": training.params,
        "train_pairs_per_s": (result.steps_run * config.train.batch_size
                              / max(result.train_seconds, 1e-9)),
        "wall_seconds": time.time() - started,
    }
    if out["test"]:
      results["test"] = out["test"]
    for name in ("hybrid",):
      for split, metrics in out[name].items():
        logger.scalars(int(best_step), metrics, f"{name}/{split}/")
    logger.hparams(hparams(config), {f"dev_{k}": v for k, v in out["dev"].items()})
    results_file = rundir.results_path(run_dir)
    rundir.write_json(results_file, results)
  finally:
    logger.close()
    checkpoints.close()
  say(summary(config, results, results_file))
  return results


def build_model(config, family, model_path: str):
  """(the pretrained encoder with config.peft's adapters under its pooling, its config)."""
  mode, normalize = retrieval.resolve_pooling(config.model, model_path)
  enc_cfg, encoder = family.from_hf(model_path)
  encoder.cfg = dataclasses.replace(enc_cfg, hidden_dropout=config.model.hidden_dropout,
                                    attention_dropout=config.model.attention_dropout,
                                    attention_impl=config.model.attention_impl or None)
  adapters.apply(encoder, adapters.structure(config), config.seed)
  adapters.load_initial(encoder, family.hf_linear_names(enc_cfg, prefixed=False), config)
  return retrieval.Embedder(encoder, mode, normalize), enc_cfg


def _cached(run_dir: str, name: str, compute) -> dict:
  """A result computed once per run dir (a resumed run reads it back)."""
  path = os.path.join(run_dir, name)
  if os.path.isfile(path):
    return rundir.read_json(path)
  value = compute()
  rundir.write_json(path, value)
  return value


def _line(by_split: dict) -> str:
  return "; ".join(f"{s} " + " ".join(f"{k}={v:.4f}" for k, v in m.items())
                   for s, m in by_split.items())


def summary(config, results: dict, results_file: str) -> str:
  metric = config.train.metric
  lines = [f"done: {results['step']} steps, best dev {metric} at step {results['best_step']}"]
  for split in ("dev", "test"):
    if split in results:
      ft = results[split][metric]
      base = results["baseline"][split][metric]
      zero = results["zero_shot"][split][metric]
      hybrid = results["hybrid"][split][metric]
      lines.append(f"  {split:4s} {metric}: fine-tuned {ft:.4f} vs BM25 {base:.4f}, pretrained "
                   f"(zero-shot) {zero:.4f}; hybrid (fine-tuned + BM25) {hybrid:.4f}")
  run = os.path.dirname(results_file)
  lines.append(f"results: {results_file}")
  lines.append(f"tensorboard --logdir {run}/tb")
  lines.append(f"search:  python -m fjft.search --run={run} --corpus=<file> --query=\"...\"")
  lines.append(f"embed:   python -m fjft.embed --run={run} --input=<file> --output=<out.npy>")
  lines.append(f"export:  python -m fjft.export --run={run} --out=<dir>  "
               "(a sentence-transformers folder)")
  return "\n".join(lines)
