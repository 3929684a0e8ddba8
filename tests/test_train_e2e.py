"""A real run end to end on a tiny random BERT: run dir, results, resume, predict, export."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from fjft.config import experiment as config_lib
from fjft.tasks.classify import task as runner
from tests.conftest import QUICKSTART, REPO, cli_args


def _last_state(run_dir):
  last = os.path.join(run_dir, "checkpoints", "last")
  step = max(int(s) for s in os.listdir(last) if s.isdigit())
  with ocp.StandardCheckpointer() as ckptr:
    tree = ckptr.restore(os.path.join(last, str(step), "state"))
  return step, tree


def test_run_dir_and_results(finished_run):
  config, workdir, results, _ = finished_run
  run_dir = os.path.join(workdir, config_lib.run_name(config))
  for name in ("config.json", "env.json", "results.json", "data_report.json", "model.json", "tb"):
    assert os.path.exists(os.path.join(run_dir, name)), name
  assert results["config_hash"] == config_lib.config_hash(config)
  assert results["step"] == 12 and results["best_step"] in (4, 8, 12)
  for split in ("dev", "test"):
    assert set(results[split]) == {"accuracy", "macro_f1"}
    assert set(results["baseline"][split]) == {"accuracy", "macro_f1"}
  env = json.load(open(os.path.join(run_dir, "env.json")))
  assert env["data_files"] and all(len(h) == 64 for h in env["data_files"].values())
  assert os.listdir(os.path.join(run_dir, "tb"))
  # the same command again reports the finished run instead of training
  said = []
  again = runner.run(config, workdir, say=said.append)
  assert again == results and "already finished" in said[0]


def test_compiles_a_handful_of_times(finished_run):
  *_, records = finished_run
  compiles = [r for r in records if "train_step" in r and "ompil" in r]
  # one train-step compile per sequence bucket (quickstart: 32 and 64), never per step
  assert 1 <= len(compiles) <= 2 * 2, compiles


def test_killed_twice_then_resumed_is_bit_identical(finished_run, tiny_bert_dir, tmp_path):
  config, workdir, results, _ = finished_run
  cmd = cli_args(tiny_bert_dir, str(tmp_path))
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  rng = random.Random(1234)
  run_dir = os.path.join(str(tmp_path), config_lib.run_name(config))
  for sig in (signal.SIGTERM, signal.SIGKILL):
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # wait for training to have started (a checkpoint exists), then stop at a random point
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
      last = os.path.join(run_dir, "checkpoints", "last")
      if os.path.isdir(last) and any(s.isdigit() for s in os.listdir(last)):
        break
      time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 1.5))
    proc.send_signal(sig)
    out = proc.communicate(timeout=120)[0].decode()
    if sig == signal.SIGTERM and proc.returncode == 130:
      assert "saved a checkpoint" in out
  done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout + done.stderr
  resumed = json.load(open(os.path.join(run_dir, "results.json")))
  for key in ("step", "best_step", "dev", "test", "history"):
    assert resumed[key] == results[key], key
  step_a, a = _last_state(os.path.join(workdir, config_lib.run_name(config)))
  step_b, b = _last_state(run_dir)
  assert step_a == step_b == 12
  import jax
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_predict_and_export(finished_run, tmp_path):
  transformers = pytest.importorskip("transformers")
  torch = pytest.importorskip("torch")
  config, workdir, _, _ = finished_run
  run_dir = os.path.join(workdir, config_lib.run_name(config))
  texts = ["where is my parcel, it has been two weeks", "please cancel order 5512",
           "I was charged twice"]
  inp = tmp_path / "in.jsonl"
  inp.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
  out = tmp_path / "out.jsonl"
  subprocess.run([sys.executable, "-m", "fjft.predict", f"--run={run_dir}", f"--input={inp}",
                  f"--output={out}"], cwd=REPO, check=True, capture_output=True)
  rows = [json.loads(l) for l in out.read_text().splitlines()]
  labels = json.load(open(os.path.join(run_dir, "model.json")))["labels"]
  assert len(rows) == 3
  for r in rows:
    assert r["label"] in labels and abs(sum(r["probs"].values()) - 1) < 1e-4
    assert r["label"] == max(r["probs"], key=r["probs"].get)

  from fjft import export
  from fjft.run import opened as infer
  hf_dir = export.export_hf(run_dir, str(tmp_path / "hf"))
  model = transformers.AutoModelForSequenceClassification.from_pretrained(hf_dir).eval()
  tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
  ours = infer.logits_texts(infer.load_run(run_dir), texts)
  with torch.no_grad():
    theirs = np.stack([model(**tok(t, return_tensors="pt")).logits[0].numpy() for t in texts])
  np.testing.assert_allclose(ours, theirs, atol=1e-4)
  assert model.config.id2label[0] == labels[0]


def test_predict_scores_gold_labels_through_a_label_map(finished_run, tmp_path):
  config, workdir, _, _ = finished_run
  run_dir = os.path.join(workdir, config_lib.run_name(config))
  labels = json.load(open(os.path.join(run_dir, "model.json")))["labels"]
  rows = [json.loads(l) for l in open(os.path.join(REPO, "experiments/data/quickstart/test.jsonl"))]
  rows = rows[:40]
  inp = tmp_path / "other.jsonl"   # another file's label names: "intent_<run label>"
  inp.write_text("".join(json.dumps({"review": r["text"], "gold": f"intent_{r['label']}"}) + "\n"
                         for r in rows))
  out = tmp_path / "out.jsonl"
  mapping = ",".join(f"intent_{l}={l}" for l in labels)
  done = subprocess.run([sys.executable, "-m", "fjft.predict", f"--run={run_dir}", f"--input={inp}",
                         f"--output={out}", "--text_column=review", "--label_column=gold",
                         f"--label_map={mapping}"], cwd=REPO, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr
  preds = [json.loads(l)["label"] for l in out.read_text().splitlines()]
  expected = np.mean([p == r["label"] for p, r in zip(preds, rows)])
  assert f"accuracy {expected:.4f}" in done.stdout

  bad = subprocess.run([sys.executable, "-m", "fjft.predict", f"--run={run_dir}", f"--input={inp}",
                        f"--output={out}", "--text_column=review", "--label_column=gold"],
                       cwd=REPO, capture_output=True, text=True)
  assert bad.returncode == 2 and "Traceback" not in bad.stderr
  assert "other.jsonl:1: label 'intent_" in bad.stderr and "--label_map" in bad.stderr


def _cli(args):
  return subprocess.run([sys.executable, "-m", "fjft.train"] + args, cwd=REPO,
                        capture_output=True, text=True, timeout=120)


def test_cli_bad_config_field_and_bad_data(tiny_bert_dir, tmp_path):
  r = _cli([f"--config={QUICKSTART}", f"--workdir={tmp_path}", "--config.optim.lrr=1e-4"])
  assert r.returncode == 2 and "Traceback" not in r.stderr
  assert "optim.lrr" in r.stderr and "did you mean 'optim.lr'" in r.stderr

  bad = tmp_path / "data"
  bad.mkdir()
  rows = [json.dumps({"text": f"example {i}", "label": "ab"[i % 2]}) for i in range(20)]
  rows[6] = '{"text": "broken json", "label": '
  (bad / "train.jsonl").write_text("\n".join(rows) + "\n")
  r = _cli([f"--config={QUICKSTART}", f"--workdir={tmp_path}", f"--config.data.path={bad}",
            f"--config.model.name={tiny_bert_dir}"])
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
  assert f"{bad / 'train.jsonl'}:7" in r.stderr and "JSON" in r.stderr


def test_cli_cudnn_attention_without_a_gpu_is_a_clear_error(tiny_bert_dir, tmp_path):
  r = _cli([f"--config={QUICKSTART}", f"--workdir={tmp_path}", f"--config.model.name={tiny_bert_dir}",
            "--config.model.attention_impl=cudnn", "--config.model.compute_dtype=bfloat16"])
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
  assert "model.attention_impl='cudnn' needs a GPU" in r.stderr
  assert not os.listdir(tmp_path)  # refused before a run directory was made
