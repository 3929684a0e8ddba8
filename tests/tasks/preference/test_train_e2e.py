"""Preference tuning end to end on a tiny random Llama with SmolLM2's tokenizer: each loss
and reference kind trains, beats the starting model on an easy preference, records what
its reference cost, and the run opens, generates and exports as a decoder."""

import json
import os

import numpy as np
import pytest

from fjft.config import experiment as config_lib
from fjft.errors import ConfigError
from fjft.run import opened, runner
from fjft.tasks.preference.config import default_config

TOPICS = ["card", "loan", "refund", "transfer", "pin", "fee", "account", "branch"]


def _pairs(path, n):
  with open(path, "w") as f:
    for i in range(n):
      t = TOPICS[i % len(TOPICS)]
      f.write(json.dumps({"prompt": f"question {i} about my {t}",
                          "chosen": f"Happy to help with your {t}: see the {t} page.",
                          "rejected": "No."}) + "\n")


def _config(model_dir, data, **fields):
  c = default_config()
  c.model.name = model_dir
  c.data.path = str(data)
  c.data.max_length = 48
  c.train.steps = 20
  c.train.eval_every = 10
  c.train.checkpoint_every = 10
  c.train.batch_size = 8
  c.train.progress = False
  c.optim.lr = 3e-3
  for k, v in fields.items():
    config_lib.set_field(c, k, str(v))
  return c


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
  _pairs(path, 160)
  return path


@pytest.fixture(scope="module")
def lora_dpo(tiny_llama_dir, pairs_file, tmp_path_factory):
  c = _config(tiny_llama_dir, pairs_file, **{"peft.method": "lora", "peft.rank": 8,
                                            "optim.lr": 1e-2})
  return runner.run(c, str(tmp_path_factory.mktemp("runs")), say=lambda *_: None)


def test_a_lora_dpo_run_learns_the_preference_against_its_base(lora_dpo):
  r = lora_dpo
  assert r["reference"] == "adapters_off" and r["reference_weight_bytes"] == 0
  assert r["test"]["accuracy"] > 0.9 and r["test"]["margin"] > 0
  assert set(r["pretrained"]["test"]) == {"accuracy", "margin"}
  assert {"tfidf", "shorter"} <= set(r) and r["shorter"]["test"]["accuracy"] == 0.0
  assert set(r["dev"]) == {"accuracy", "margin", "loss", "chosen_logps", "rejected_logps",
                           "logratio"} and all(np.isfinite(v) for v in r["dev"].values())
  report = json.load(open(os.path.join(r["run_dir"], "data_report.json")))
  assert sum(s["examples"] for s in report["splits"].values()) == 160


@pytest.mark.slow
def test_the_run_generates_and_exports_as_a_decoder(lora_dpo, tmp_path):
  transformers = pytest.importorskip("transformers")
  run = opened.open_run(lora_dpo["run_dir"])
  assert run.tokenizer.chat_template is not None
  out = opened.export(lora_dpo["run_dir"], "hf", str(tmp_path / "hf"))
  assert "wrote" in out
  model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"))
  assert model.config.model_type == "llama"


# (IPO and ORPO run the same code as these with another loss formula, held to TRL's in
# test_loss: a run each would cost the suite 15 s for no other line of code)
@pytest.mark.parametrize("fields, reference", [
    ({}, "precompute"),                                     # full fine-tune DPO
    ({"loss.kind": "simpo", "loss.beta": 2.0}, "none"),     # reference-free
])
def test_each_loss_kind_trains(tiny_llama_dir, pairs_file, tmp_path, fields, reference):
  c = _config(tiny_llama_dir, pairs_file, **{"train.steps": 12, "train.eval_every": 12,
                                            "train.checkpoint_every": 12, **fields})
  r = runner.run(c, str(tmp_path), say=lambda *_: None)
  assert r["reference"] == reference
  assert r["test"]["accuracy"] >= r["pretrained"]["test"]["accuracy"]
  assert np.isfinite(r["test"]["loss"])
  if reference == "precompute":
    assert r["reference_logps_bytes"] == 4 * 2 * 160 and r["reference_seconds"] > 0
    cached = json.load(open(os.path.join(r["run_dir"], "reference_logps.json")))
    assert len(cached["train"]) + len(cached["dev"]) + len(cached["test"]) == 160


def test_bad_reference_settings_name_the_field(tiny_llama_dir, pairs_file, tmp_path):
  with pytest.raises(ConfigError, match="loss.reference='adapters_off' needs a LoRA run"):
    runner.run(_config(tiny_llama_dir, pairs_file, **{"loss.reference": "adapters_off"}),
               str(tmp_path), say=lambda *_: None)
  with pytest.raises(ConfigError, match="loss.kind must be one of"):
    runner.run(_config(tiny_llama_dir, pairs_file, **{"loss.kind": "kto"}), str(tmp_path),
               say=lambda *_: None)
