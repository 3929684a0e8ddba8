"""Search: a pretrained encoder's pooled output as the embedding (no new parameters),
contrastive training with in-batch (and mined) negatives, and held-out queries searching
the whole corpus, scored with nDCG@10, MRR@10, Recall@100 and MAP against BM25
(`baseline`), the pretrained model (`zero_shot`) and, at the end, the fine-tuned model
fused with BM25 (`hybrid`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fjft.data import batches as batches_lib
from fjft.models import adapters, encoders
from fjft.tasks.base import BestByStep, EncoderTask, RunContext, check_metric
from fjft.tasks.retrieval import data as ir_data
from fjft.tasks.retrieval import embedding
from fjft.tasks.retrieval import metrics as ir_metrics
from fjft.tasks.retrieval import model as retrieval
from fjft.tasks.retrieval.bm25 import BM25
from fjft.tasks.retrieval.config import BOUNDS, default_config
from fjft.tasks.retrieval.pairs import PairBatches
from fjft.tasks.retrieval.ranking import reciprocal_rank_fusion, top_k, top_k_of_scores


def build_model(config, encoder: encoders.Encoder) -> retrieval.Embedder:
  """The pretrained encoder (with config.peft's adapters) under the run's pooling."""
  mode, normalize = retrieval.resolve_pooling(config.model, encoder.path)
  adapters.load_initial(encoder.module, encoder.family.hf_linear_names(encoder.cfg,
                                                                       prefixed=False), config)
  return retrieval.Embedder(encoder.module, mode, normalize)


def _line(by_split: dict) -> str:
  return "; ".join(f"{s} " + " ".join(f"{k}={v:.4f}" for k, v in m.items())
                   for s, m in by_split.items())


class RetrievalRun:

  def __init__(self, ctx: RunContext):
    config = self.config = ctx.config
    check_metric(config, ir_metrics.NAMES)
    d = config.data
    self.data = data = ir_data.load_collection(d)
    ctx.report(data.report)   # before the model is read: data problems show first
    encoder = encoders.load(config, ctx.mesh)   # each weight straight to its shard
    self.tokenizer, self.family = encoder.tokenizer, encoder.model_type
    self.model = build_model(config, encoder)
    self.info = {"hf_config": encoder.cfg.to_hf(), "pooling": self.model.mode,
                 "normalize": self.model.normalize,
                 "query_max_length": d.query_max_length, "query_buckets": list(d.query_buckets),
                 "doc_max_length": d.doc_max_length, "doc_buckets": list(d.doc_buckets)}
    self.trainable = adapters.trainable_regex(config)
    self.docs_enc = embedding.encode_texts(data.doc_texts, self.tokenizer, d.doc_max_length)
    self.train_docs_enc = self.docs_enc
    if 0 < d.train_doc_max_length < d.doc_max_length:
      self.train_docs_enc = embedding.encode_texts(data.doc_texts, self.tokenizer,
                                                   d.train_doc_max_length)
    query_ids = list(data.queries)
    self.query_row = {q: i for i, q in enumerate(query_ids)}
    self.queries_enc = embedding.encode_texts([data.queries[q] for q in query_ids],
                                              self.tokenizer, d.query_max_length)
    self.split_enc = {}   # each evaluated split's queries, encoded once
    for split in ("dev", "test"):
      rows = [self.query_row[q] for q in data.split_queries(split)]
      self.split_enc[split] = batches_lib.Encoded(ids=[self.queries_enc.ids[i] for i in rows],
                                                  labels=self.queries_enc.labels[rows])
    self.splits = [s for s in ("dev", "test") if data.split_queries(s)]
    self.bm25 = BM25(data.doc_texts, k1=config.baseline.k1, b=config.baseline.b)
    self.to_device, self.mesh, self.say = ctx.to_device, ctx.mesh, ctx.say
    # The corpus embeddings of the best dev evaluation so far, by step: the final report
    # uses them when that step is the best checkpoint's (embedding the corpus again costs
    # a minute or more on a CPU).
    self.best_docs = BestByStep(config.train.metric)
    self.pairs = None

  def apply_fn(self, graphdef):
    self.embed_step = embedding.make_embed_step(graphdef, self.config.model.compute_dtype,
                                                self.mesh)
    dtype = jnp.dtype(self.config.model.compute_dtype)

    def apply_fn(params, batch, dropout_key):
      m = nnx.merge(graphdef, params)
      q_key = d_key = None
      if dropout_key is not None:
        q_key, d_key = jax.random.split(dropout_key)
      q = m(batch["q_ids"], batch["q_mask"], dropout_key=q_key, compute_dtype=dtype)
      docs = m(batch["d_ids"], batch["d_mask"], dropout_key=d_key, compute_dtype=dtype)
      return q, docs

    return apply_fn

  def loss_fn(self, out, batch):
    q, docs = out
    return retrieval.contrastive_loss(q, docs, batch, self.config.loss.temperature,
                                      self.config.loss.symmetric)

  def batches(self):
    if self.pairs is None:
      self.pairs = PairBatches(self.data, self.train_docs_enc, self.queries_enc, self.query_row,
                               self.bm25, self.tokenizer.pad_id, self.config)
    return self.pairs

  def _embed_corpus(self, params) -> np.ndarray:
    d = self.config.data
    return embedding.embed_encoded(self.embed_step, params, self.docs_enc,
                                   self.config.train.eval_batch_size, d.doc_buckets,
                                   self.tokenizer.pad_id, self.to_device)

  def _rank(self, params, split: str, docs: np.ndarray) -> dict[str, list[str]]:
    """Each query of `split` searches the corpus `docs`: {query id: doc ids, best first}."""
    qids = self.data.split_queries(split)
    queries = embedding.embed_encoded(self.embed_step, params, self.split_enc[split],
                                      self.config.train.eval_batch_size,
                                      self.config.data.query_buckets, self.tokenizer.pad_id,
                                      self.to_device)
    idx, _ = top_k(queries, docs, ir_metrics.RANK_DEPTH)
    return {q: [self.data.doc_ids[j] for j in row] for q, row in zip(qids, idx)}

  def _bm25_rank(self, split: str) -> dict[str, list[str]]:
    qids = self.data.split_queries(split)
    scores = self.bm25.scores([self.data.queries[q] for q in qids])
    idx, _ = top_k_of_scores(scores, ir_metrics.RANK_DEPTH)
    return {q: [self.data.doc_ids[j] for j in row] for q, row in zip(qids, idx)}

  def baselines(self, ctx: RunContext, params) -> dict:
    qrels = self.data.split_qrels
    baseline = ctx.cached("baseline.json", lambda: {
        s: ir_metrics.evaluate(self._bm25_rank(s), qrels(s)) for s in self.splits})
    self.say("BM25 baseline: " + _line(baseline))

    def zero_shot():
      docs = self._embed_corpus(params)
      return {s: ir_metrics.evaluate(self._rank(params, s, docs), qrels(s)) for s in self.splits}

    zero = ctx.cached("zero_shot.json", zero_shot)
    self.say("pretrained model (zero-shot): " + _line(zero))
    return {"baseline": baseline, "zero_shot": zero}

  def evaluate(self, params, split: str, step: int | None = None) -> dict:
    docs = self._embed_corpus(params)
    metrics = ir_metrics.evaluate(self._rank(params, split, docs), self.data.split_qrels(split))
    self.best_docs.offer(step, metrics, docs)
    return metrics

  def finish(self, ctx: RunContext, params, best_step: int) -> dict:
    docs = self.best_docs.at(best_step)
    if docs is None:   # the best step was evaluated before a resume
      docs = self._embed_corpus(params)
    out: dict = {"dev": {}, "hybrid": {}}
    for s in self.splits:
      ranked = self._rank(params, s, docs)
      out[s] = ir_metrics.evaluate(ranked, self.data.split_qrels(s))
      lexical = self._bm25_rank(s)
      fused = {q: reciprocal_rank_fusion([ranked[q], lexical[q]], self.config.eval.fusion_k,
                                         ir_metrics.RANK_DEPTH) for q in ranked}
      out["hybrid"][s] = ir_metrics.evaluate(fused, self.data.split_qrels(s))
    return out

  def describe(self, counts: dict) -> str:
    c, pairs, info = self.config, self.batches(), self.info
    return (f"model {c.model.name}: {adapters.describe_counts(counts)}, {info['pooling']} "
            f"pooling{', normalised' if info['normalize'] else ''}; training "
            f"{c.train.steps} steps of {c.train.batch_size} queries x {pairs.group} documents "
            f"({len(pairs.pairs)} training pairs)")

  def summary(self, results: dict) -> list[str]:
    metric, lines = self.config.train.metric, []
    for split in ("dev", "test"):
      if split in results:
        ft, base = results[split][metric], results["baseline"][split][metric]
        zero, hybrid = results["zero_shot"][split][metric], results["hybrid"][split][metric]
        lines.append(f"  {split:4s} {metric}: fine-tuned {ft:.4f} vs BM25 {base:.4f}, pretrained "
                     f"(zero-shot) {zero:.4f}; hybrid (fine-tuned + BM25) {hybrid:.4f}")
    return lines

  def commands(self, run_dir: str) -> list[str]:
    return [f"search:  python -m fjft.search --run={run_dir} --corpus=<file> --query=\"...\"",
            f"embed:   python -m fjft.embed --run={run_dir} --input=<file> --output=<out.npy>",
            f"export:  python -m fjft.export --run={run_dir} --out=<dir>  "
            "(a sentence-transformers folder)"]

  def extra_results(self, results: dict) -> dict:
    return {}


def skeleton(info: dict) -> retrieval.Embedder:
  """The run's embedder with the right shapes, without reading pretrained weights."""
  encoder, _ = encoders.skeleton(info)
  return retrieval.Embedder(encoder, info["pooling"], info["normalize"])


class RetrievalTask(EncoderTask):
  name = "retrieval"
  uses = {"embed": "python -m fjft.embed", "search": "python -m fjft.search",
          "export": "python -m fjft.export"}
  report_lines = staticmethod(ir_data.report_lines)

  default_config = staticmethod(default_config)
  bounds = BOUNDS
  run_class = RetrievalRun
  skeleton = staticmethod(skeleton)

  def plan_model(self, config):
    return build_model(config, encoders.load(config)), adapters.trainable_regex(config)


  def exports(self) -> dict:
    from fjft.tasks.retrieval import export
    return {"hf": export.export_sentence_transformers, "peft": export.export_peft}

  def embed(self, run, texts: list[str], batch_size: int = 64, kind: str = "doc"):
    return embedding.embed_texts(run, texts, batch_size, kind)

  def search(self, run, **options) -> None:
    """`python -m fjft.search`: see fjft.tasks.retrieval.search.search."""
    from fjft.tasks.retrieval import search
    search.search(run, **options)


TASK = RetrievalTask()
