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


SHORT = {"train.steps": 12, "train.eval_every": 12, "train.checkpoint_every": 12,
         "train.log_every": 1}


@pytest.fixture(scope="module")
def precompute_run(tiny_llama_dir, pairs_file, tmp_path_factory):
  """A full fine-tune DPO run: its reference log-probs precomputed."""
  return runner.run(_config(tiny_llama_dir, pairs_file, **SHORT),
                    str(tmp_path_factory.mktemp("precompute")), say=lambda *_: None)


# (IPO and ORPO run the same code as these with another loss formula, held to TRL's in
# test_loss: a run each would cost the suite 15 s for no other line of code)
@pytest.mark.parametrize("fields, reference", [
    ({}, "precompute"),                                     # full fine-tune DPO
    # reference-free, with generation metrics in the loop
    ({"loss.kind": "simpo", "loss.beta": 2.0, "eval.generate": 4, "eval.metrics": "rougeL",
      "eval.max_new_tokens": 8}, "none"),
])
def test_each_loss_kind_trains(tiny_llama_dir, pairs_file, precompute_run, tmp_path, fields,
                               reference):
  r = precompute_run if not fields else runner.run(
      _config(tiny_llama_dir, pairs_file, **SHORT, **fields), str(tmp_path),
      say=lambda *_: None)
  assert r["reference"] == reference
  assert r["test"]["accuracy"] >= r["pretrained"]["test"]["accuracy"]
  assert np.isfinite(r["test"]["loss"])
  if reference == "precompute":
    assert r["reference_logps_bytes"] == 4 * 2 * 160 and r["reference_seconds"] > 0
    cached = json.load(open(os.path.join(r["run_dir"], "reference_logps.json")))
    assert len(cached["train"]) + len(cached["dev"]) + len(cached["test"]) == 160
  if "eval.generate" in fields:
    assert "rougeL" in r["test"] and "rougeL" in r["dev"] and "rougeL" in r["pretrained"]["test"]
    samples = json.load(open(os.path.join(r["run_dir"], "generations.json")))
    assert len(samples["test"]) == 4 and samples["test"][0]["reference"].startswith("Happy")


def test_bad_reference_settings_name_the_field(tiny_llama_dir, pairs_file, tmp_path):
  with pytest.raises(ConfigError, match="loss.reference='adapters_off' needs a LoRA run"):
    runner.run(_config(tiny_llama_dir, pairs_file, **{"loss.reference": "adapters_off"}),
               str(tmp_path), say=lambda *_: None)
  with pytest.raises(ConfigError, match="loss.kind must be one of"):
    runner.run(_config(tiny_llama_dir, pairs_file, **{"loss.kind": "kto"}), str(tmp_path),
               say=lambda *_: None)
  with pytest.raises(ConfigError, match="eval.generate=4 generates replies to score, but "
                                        "eval.metrics names none"):
    runner.run(_config(tiny_llama_dir, pairs_file, **{"eval.generate": 4}), str(tmp_path),
               say=lambda *_: None)


def test_predict_scores_two_replies_with_the_runs_reward(lora_dpo, tmp_path):
  """fjft.predict on a preference run: each pair's rewards are the run's (beta x the log-prob
  ratio to the base), the tuned model picks the replies it learned to prefer, and the
  command line opens the run by the task model.json names."""
  import subprocess
  import sys
  inp = tmp_path / "pairs.jsonl"
  rows = [{"prompt": "question 900 about my card", "chosen": "Happy to help with your card: "
           "see the card page.", "rejected": "No."},
          {"prompt": "question 901 about my fee", "chosen": "No.",
           "rejected": "Happy to help with your fee: see the fee page."}]
  inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
  out = tmp_path / "scores.jsonl"
  proc = subprocess.run([sys.executable, "-m", "fjft.predict", f"--run={lora_dpo['run_dir']}",
                         f"--input={inp}", f"--output={out}"], capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert "prefers the 'chosen' reply in 1 of 2 pairs" in proc.stdout
  scores = [json.loads(line) for line in out.read_text().splitlines()]
  assert [s["prefers"] for s in scores] == ["chosen", "rejected"]
  for s in scores:
    for side in ("chosen", "rejected"):
      np.testing.assert_allclose(s[f"{side}_reward"],
                                 0.1 * (s[f"{side}_logp"] - s[f"{side}_ref_logp"]), rtol=1e-6)
    assert s["margin"] == pytest.approx(s["chosen_reward"] - s["rejected_reward"])

  from fjft.errors import DataError, FjftError
  from fjft.tasks.preference import data as pref_data
  from fjft.tasks.preference import use
  run = opened.open_run(lora_dpo["run_dir"], "predict")
  # on the run's own dev pairs it agrees with the run's dev scores (the same reference:
  # the base with the adapters off)
  config = json.load(open(os.path.join(lora_dpo["run_dir"], "config.json")))
  cfg = default_config().data
  cfg.update(config["data"])
  splits, _ = pref_data.load_splits(cfg, run.tokenizer, config["model"]["name"])
  lines = open(config["data"]["path"]).read().splitlines()
  dev = tmp_path / "dev.jsonl"
  dev.write_text("".join(lines[int(p.where.rsplit(":", 1)[1]) - 1] + "\n" for p in splits.dev))
  use.predict_file(run, str(dev), str(tmp_path / "dev_scores.jsonl"), batch_size=8)
  scored = [json.loads(line) for line in (tmp_path / "dev_scores.jsonl").read_text().splitlines()]
  assert np.mean([s["prefers"] == "chosen" for s in scored]) == lora_dpo["dev"]["accuracy"]
  np.testing.assert_allclose(np.mean([s["margin"] for s in scored]), lora_dpo["dev"]["margin"],
                             rtol=1e-4)
  bad = tmp_path / "bad.jsonl"
  bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"prompt": "hi", "chosen": "a"}) + "\n")
  with pytest.raises(DataError, match=r"bad.jsonl:2: .*'rejected'.*fix or remove that row"):
    use.predict_file(run, str(bad), str(tmp_path / "o.jsonl"), batch_size=8)
  with pytest.raises(FjftError, match="--label_column .* do not apply to a preference run"):
    use.predict_file(run, str(inp), str(tmp_path / "o.jsonl"), batch_size=8,
                     label_column="label")


def test_a_run_starts_from_another_runs_best_checkpoint(lora_dpo, pairs_file, tmp_path):
  """model.name = a run directory (SFT, then DPO): the second run's starting model is the
  first's best checkpoint, adapters merged, with its tokenizer."""
  from fjft.models.pretrained import load_lm
  lm = load_lm(lora_dpo["run_dir"])
  assert lm.source == os.path.abspath(lora_dpo["run_dir"])
  assert lm.tokenizer.chat_template is not None
  c = _config(lora_dpo["run_dir"], pairs_file, **{"train.steps": 2, "train.eval_every": 2,
                                                  "train.checkpoint_every": 2,
                                                  "peft.method": "lora", "peft.rank": 4})
  r = runner.run(c, str(tmp_path), say=lambda *_: None)
  start = json.load(open(os.path.join(r["run_dir"], "reference_logps.json")))
  # its reference (the starting model) scores dev as the first run's best checkpoint did
  np.testing.assert_allclose(np.mean(np.asarray(start["dev"])[:, 0]),
                             lora_dpo["dev"]["chosen_logps"], rtol=1e-4)
  # its adapter has no base PEFT could load: said, not written
  from fjft.errors import FjftError
  with pytest.raises(FjftError, match="PEFT cannot load as a base model"):
    opened.export(r["run_dir"], "peft", str(tmp_path / "adapter"))


def test_a_frozen_copy_reference_trains_as_the_precomputed_one(tiny_llama_dir, pairs_file,
                                                                precompute_run, tmp_path):
  """reference=frozen_copy (the starting weights, an input of each step, here with two
  micro-batches a step) gives the same reference log-probs as precompute, so the same run;
  it says what the copy costs."""
  c = _config(tiny_llama_dir, pairs_file, **SHORT, **{"loss.reference": "frozen_copy",
                                                      "train.grad_accum": 2})
  frozen, pre = runner.run(c, str(tmp_path), say=lambda *_: None), precompute_run
  assert frozen["reference"] == "frozen_copy" and "reference_logps_bytes" not in frozen
  assert frozen["reference_weight_bytes"] == 4 * frozen["params"]["total"]
  np.testing.assert_allclose([l for _, l in frozen["train_loss"]],
                             [l for _, l in pre["train_loss"]], rtol=1e-5)
  assert frozen["test"]["accuracy"] == pre["test"]["accuracy"]
