"""A search fine-tuning run end to end on a tiny random BERT: results, embed and search
CLIs, the sentence-transformers export; and embedding parity on the real MiniLM."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fjft.config import identity
from fjft.tasks.retrieval import embedding
from fjft.run import opened, runner
from fjft.tasks.retrieval.pairs import PairBatches
from fjft.tasks.retrieval.config import default_config as retrieval_config
from tests.conftest import REPO, minilm_dir

TOPICS = ["wing flutter", "heat transfer", "shock waves", "boundary layer", "jet noise",
          "rocket nozzle", "laminar flow", "supersonic inlet", "panel buckling", "blade stall"]


def write_beir(root):
  os.makedirs(os.path.join(root, "qrels"), exist_ok=True)
  with open(os.path.join(root, "corpus.jsonl"), "w") as f:
    for i, topic in enumerate(TOPICS):
      for j in range(3):
        f.write(json.dumps({"_id": f"d{i}-{j}", "title": topic,
                            "text": f"a study {j} of {topic} in experiments"}) + "\n")
  with open(os.path.join(root, "queries.jsonl"), "w") as f:
    for i, topic in enumerate(TOPICS):
      f.write(json.dumps({"_id": f"q{i}", "text": f"what is known about {topic}"}) + "\n")
  for split, topics in (("train", range(0, 7)), ("test", range(7, 10))):
    with open(os.path.join(root, "qrels", f"{split}.tsv"), "w") as f:
      f.write("query-id\tcorpus-id\tscore\n")
      for i in topics:
        for j in range(3):
          f.write(f"q{i}\td{i}-{j}\t{2 if j == 0 else 1}\n")
  return root


def tiny_config(model_dir, data_dir):
  c = retrieval_config()
  c.name = "tiny-search"
  c.model.name = model_dir
  c.data.path = data_dir
  c.data.dev_fraction = 0.3
  c.data.query_buckets = (16,)
  c.data.doc_buckets = (16, 32)
  c.data.doc_max_length = 32
  c.data.query_max_length = 16
  c.loss.hard_negatives = 1
  c.loss.symmetric = True
  c.train.steps = 6
  c.train.batch_size = 4
  c.train.eval_every = 3
  c.train.checkpoint_every = 3
  c.train.progress = False
  c.optim.lr = 1e-3
  return c


@pytest.fixture(scope="module")
def search_run(tiny_bert_dir, tmp_path_factory):
  data_dir = write_beir(str(tmp_path_factory.mktemp("beir")))
  workdir = str(tmp_path_factory.mktemp("runs"))
  config = tiny_config(tiny_bert_dir, data_dir)
  said = []
  results = runner.run(config, workdir, say=said.append)
  return config, workdir, results, "\n".join(said), data_dir


def test_results_have_every_comparison(search_run):
  config, workdir, results, said, _ = search_run
  run_dir = os.path.join(workdir, identity.run_name(config))
  metrics = {"ndcg@10", "mrr@10", "recall@100", "map"}
  assert set(results["dev"]) == metrics and set(results["test"]) == metrics
  for name in ("baseline", "zero_shot", "hybrid"):
    assert set(results[name]) == {"dev", "test"}
    assert set(results[name]["test"]) == metrics
  # BM25 finds these lexically obvious documents; the metric is in range everywhere
  assert results["baseline"]["test"]["ndcg@10"] > 0.9
  assert all(0 <= v <= 1 for s in ("dev", "test") for v in results[s].values())
  assert results["step"] == 6 and results["best_step"] in (3, 6)
  assert "test ndcg@10: fine-tuned" in said and "hybrid" in said
  info = json.load(open(os.path.join(run_dir, "model.json")))
  assert info["task"] == "retrieval" and info["pooling"] == "mean" and info["normalize"]
  again = []
  runner.run(config, workdir, say=again.append)
  assert "already finished" in again[0]


def test_pair_batches_are_a_function_of_the_step(search_run):
  config, workdir, _, _, _ = search_run
  from fjft.tasks.retrieval.bm25 import BM25
  from fjft.tasks.retrieval import data as ir_data
  from fjft.models.tokenizer import Tokenizer
  data = ir_data.load_collection(config.data)
  tok = Tokenizer.from_dir(config.model.name)
  docs = embedding.encode_texts(data.doc_texts, tok, 32)
  qids = list(data.queries)
  queries = embedding.encode_texts([data.queries[q] for q in qids], tok, 16)
  make = lambda: PairBatches(data, docs, queries, {q: i for i, q in
                                              enumerate(qids)}, BM25(data.doc_texts), 0, config)
  a, b = make(), make()
  for step in (0, 5, 17):
    x, y = a.batch(step), b.batch(step)
    assert all(np.array_equal(x[k], y[k]) for k in x)
  batch = a.batch(0)
  g = 1 + config.loss.hard_negatives
  assert batch["d_ids"].shape[0] == config.train.batch_size * g
  # a hard negative is never a document relevant to its query
  for row in range(config.train.batch_size):
    if batch["weights"][row]:
      negs = batch["doc_index"][row * g + 1:(row + 1) * g]
      assert not set(negs.tolist()) & set(batch["relevant"][row].tolist())


def _cli(*args):
  out = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stdout


@pytest.mark.slow
def test_embed_and_search_clis(search_run, tmp_path):
  config, workdir, _, _, _ = search_run
  run_dir = os.path.join(workdir, identity.run_name(config))
  corpus = tmp_path / "corpus.csv"
  corpus.write_text("id,text\n" + "".join(f"doc{i},notes on {t}\n" for i, t in enumerate(TOPICS))
                    + "empty,\n")
  out = tmp_path / "emb.npy"
  _cli("fjft.embed", f"--run={run_dir}", f"--input={corpus}", f"--output={out}")
  vectors = np.load(out)
  assert vectors.shape == (11, 32)
  np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
  run = opened.open_run(run_dir)
  texts = [f"notes on {t}" for t in TOPICS] + [""]
  np.testing.assert_allclose(vectors, embedding.embed_texts(run, texts), atol=1e-5)

  hits = tmp_path / "hits.jsonl"
  first = _cli("fjft.search", f"--run={run_dir}", f"--corpus={corpus}", "--query=jet noise",
               "--k=3", f"--output={hits}")
  assert "embedded 10 documents (1 without text skipped)" in first
  line = json.loads(hits.read_text())
  assert line["query"] == "jet noise" and [h["rank"] for h in line["hits"]] == [1, 2, 3]
  assert line["hits"][0]["score"] >= line["hits"][1]["score"] >= line["hits"][2]["score"]
  second = _cli("fjft.search", f"--run={run_dir}", f"--corpus={corpus}", "--query=jet noise",
                "--query=shock waves", "--k=2", "--hybrid", f"--output={hits}")
  assert "from the cache" in second
  lines = [json.loads(x) for x in hits.read_text().splitlines()]
  assert [len(x["hits"]) for x in lines] == [2, 2]
  # fused with BM25, the document naming the query's words comes first
  assert lines[0]["hits"][0]["id"] == "doc4" and lines[1]["hits"][0]["id"] == "doc2"


def test_wrong_tool_for_the_run_is_a_clear_error(search_run, tmp_path):
  config, workdir, _, _, _ = search_run
  run_dir = os.path.join(workdir, identity.run_name(config))
  f = tmp_path / "in.jsonl"
  f.write_text('{"text": "hello"}\n')
  out = subprocess.run([sys.executable, "-m", "fjft.predict", f"--run={run_dir}",
                        f"--input={f}", f"--output={tmp_path / 'o.jsonl'}"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 2
  assert "is a retrieval run" in out.stderr and "fjft.search" in out.stderr
  assert "Traceback" not in out.stderr


def test_sentence_transformers_export_parity(search_run, tmp_path):
  st = pytest.importorskip("sentence_transformers")
  from fjft.run import opened
  config, workdir, _, _, _ = search_run
  run_dir = os.path.join(workdir, identity.run_name(config))
  out = str(tmp_path / "st")
  opened.export(run_dir, "hf", out)
  model = st.SentenceTransformer(out, device="cpu")
  texts = ["wing flutter at high speed", "a study of jet noise in experiments", "x"]
  theirs = model.encode(texts, convert_to_numpy=True)
  ours = embedding.embed_texts(opened.open_run(run_dir), texts)
  np.testing.assert_allclose(ours, theirs, atol=1e-4)


@pytest.mark.slow
def test_pretrained_minilm_matches_sentence_transformers():
  st = pytest.importorskip("sentence_transformers")
  import jax.numpy as jnp
  from fjft.models import bert
  from fjft.tasks.retrieval import model as retrieval
  from fjft.models.tokenizer import Tokenizer
  path = minilm_dir()
  _, encoder = bert.from_hf(path)
  mode, normalize = retrieval.pooling_of_model(path)
  model = retrieval.Embedder(encoder, mode, normalize)
  tok = Tokenizer.from_dir(path)
  texts = ["what similarity laws must be obeyed when constructing aeroelastic models",
           "Heat transfer in laminar flow."]
  ours = []
  for ids in tok.encode_batch(texts, 256):
    ids = jnp.asarray([ids])
    ours.append(np.asarray(model(ids, jnp.ones_like(ids)))[0])
  theirs = st.SentenceTransformer(path, device="cpu").encode(texts, convert_to_numpy=True)
  np.testing.assert_allclose(np.stack(ours), theirs, atol=1e-4)
