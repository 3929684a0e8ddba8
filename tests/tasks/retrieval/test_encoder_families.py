"""A search run end to end on a tiny random XLM-RoBERTa, DistilBERT and ELECTRA, and its
sentence-transformers export loading with fjft's embeddings."""

import os

import numpy as np
import pytest

from fjft.config import identity
from fjft.run import opened, runner
from fjft.tasks.retrieval import embedding
from tests.tasks.encoder_dirs import FAMILIES, tiny_encoder_dir
from tests.tasks.retrieval.test_train_e2e import tiny_config, write_beir

pytestmark = pytest.mark.slow   # a run per family, ~10 s each


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
  return write_beir(str(tmp_path_factory.mktemp("beir")))


@pytest.fixture(scope="module", params=FAMILIES)
def search_run(request, beir, tmp_path_factory):
  model_type = request.param
  model_dir = tiny_encoder_dir(model_type, tmp_path_factory.mktemp(model_type))
  workdir = str(tmp_path_factory.mktemp("runs"))
  config = tiny_config(model_dir, beir)
  config.train.steps, config.train.eval_every, config.train.checkpoint_every = 3, 3, 3
  results = runner.run(config, workdir, say=lambda s: None)
  return model_type, os.path.join(workdir, identity.run_name(config)), results


def test_sentence_transformers_export_has_the_same_embeddings(search_run, tmp_path):
  st = pytest.importorskip("sentence_transformers")
  model_type, run_dir, results = search_run
  assert results["step"] == 3
  assert opened.read_info(run_dir)["family"] == model_type
  out = str(tmp_path / "st")
  opened.export(run_dir, "hf", out)
  model = st.SentenceTransformer(out, device="cpu")
  texts = ["wing flutter at high speed", "a study of jet noise in experiments", "x"]
  theirs = model.encode(texts, convert_to_numpy=True)
  ours = embedding.embed_texts(opened.open_run(run_dir), texts)
  assert np.abs(ours - theirs).max() < 1e-4, (model_type, np.abs(ours - theirs).max())
