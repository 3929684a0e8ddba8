"""A real run end to end on a tiny random BERT: run dir, results, resume, predict, export."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from fjft.config import identity
from fjft.run import runner
from fjft.tasks.classify import use
from tests.conftest import QUICKSTART, REPO, cli_args


def _last_state(run_dir):
  last = os.path.join(run_dir, "checkpoints", "last")
  step = max(int(s) for s in os.listdir(last) if s.isdigit())
  with ocp.StandardCheckpointer() as ckptr:
    tree = ckptr.restore(os.path.join(last, str(step), "state"))
  return step, tree


def test_run_dir_and_results(finished_run):
  config, workdir, results, _ = finished_run
  run_dir = os.path.join(workdir, identity.run_name(config))
  for name in ("config.json", "env.json", "results.json", "data_report.json", "model.json", "tb"):
    assert os.path.exists(os.path.join(run_dir, name)), name
  assert results["config_hash"] == identity.config_hash(config)
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


def _checkpoint_steps(last):
  """The finished checkpoints under checkpoints/last (orbax writes `<step>.orbax-checkpoint-tmp`
  first and renames it when complete)."""
  return sorted(int(s) for s in os.listdir(last) if s.isdigit()) if os.path.isdir(last) else []


def _pause_at(proc, last, step, rng, timeout=120):
  """SIGSTOPs `proc` shortly after its checkpoint at `step` (or later) is complete: a random
  point within the next step or save. Returns the checkpoint steps at the pause."""
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if any(s >= step for s in _checkpoint_steps(last)):
      break
    time.sleep(0.005)
  assert proc.poll() is None, f"the run ended (status {proc.returncode}) before step {step}"
  assert any(s >= step for s in _checkpoint_steps(last)), f"no checkpoint at step {step} in time"
  time.sleep(rng.uniform(0.0, 0.03))
  proc.send_signal(signal.SIGSTOP)
  return _checkpoint_steps(last)


@pytest.mark.slow
def test_killed_twice_then_resumed_is_bit_identical(finished_run, tiny_bert_dir, tmp_path):
  """SIGTERM (saves, exits 130), then SIGKILL of the resumed run (at a random point, maybe
  mid-save), both asserted to have landed before the 12 steps were done; then the same
  command finishes the run with the uninterrupted run's results and params, bit for bit."""
  config, workdir, results, _ = finished_run
  total = results["step"]
  cmd = cli_args(tiny_bert_dir, str(tmp_path))
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  rng = random.Random(1234)
  run_dir = os.path.join(str(tmp_path), identity.run_name(config))
  last = os.path.join(run_dir, "checkpoints", "last")
  results_file = os.path.join(run_dir, "results.json")

  # 1. SIGTERM after the first checkpoint: the loop saves after its current step and exits 130
  # (the checkpoint is finished in the background, so the loop may be a step or two ahead)
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  at_pause = _pause_at(proc, last, 2, rng)
  assert max(at_pause) < total and not os.path.exists(results_file), at_pause
  proc.send_signal(signal.SIGTERM)
  proc.send_signal(signal.SIGCONT)
  out = proc.communicate(timeout=120)[0].decode()
  assert proc.returncode == 130, out[-3000:]
  saved = re.findall(r"SIGTERM: saved a checkpoint at step (\d+)", out)
  assert len(saved) == 1, out[-3000:]
  term_step = int(saved[0])
  assert max(at_pause) <= term_step < total
  assert max(_checkpoint_steps(last)) == term_step
  assert not os.path.exists(results_file)

  # 2. the same command resumes from there; SIGKILL it (no chance to save) at a later checkpoint
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  # a target 4 steps short of the end, so the pause cannot come after the last checkpoint
  assert term_step + 1 <= total - 4, f"SIGTERM landed at step {term_step}: too late to kill again"
  at_pause = _pause_at(proc, last, rng.randint(term_step + 1, total - 4), rng)
  assert max(at_pause) < total and not os.path.exists(results_file), at_pause
  proc.send_signal(signal.SIGKILL)   # kills a stopped process too
  out = proc.communicate(timeout=120)[0].decode()
  assert proc.returncode == -signal.SIGKILL, out[-3000:]
  assert f"resuming from the checkpoint at step {term_step}" in out, out[-3000:]
  killed_at = max(_checkpoint_steps(last))
  assert term_step < killed_at < total
  assert not os.path.exists(results_file)

  # 3. only now: resume to the end and compare with the run that was never stopped
  done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout + done.stderr
  assert f"resuming from the checkpoint at step {killed_at}" in done.stdout, done.stdout[-3000:]
  resumed = json.load(open(results_file))
  for key in ("step", "best_step", "dev", "test", "history"):
    assert resumed[key] == results[key], key
  step_a, a = _last_state(os.path.join(workdir, identity.run_name(config)))
  step_b, b = _last_state(run_dir)
  assert step_a == step_b == 12
  import jax
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_predict_and_export(finished_run, tmp_path):
  transformers = pytest.importorskip("transformers")
  torch = pytest.importorskip("torch")
  config, workdir, _, _ = finished_run
  run_dir = os.path.join(workdir, identity.run_name(config))
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

  from fjft.run import opened
  hf_dir = str(tmp_path / "hf")
  opened.export(run_dir, "hf", hf_dir)
  model = transformers.AutoModelForSequenceClassification.from_pretrained(hf_dir).eval()
  tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
  ours = use.logits_texts(opened.open_run(run_dir), texts)
  with torch.no_grad():
    theirs = np.stack([model(**tok(t, return_tensors="pt")).logits[0].numpy() for t in texts])
  np.testing.assert_allclose(ours, theirs, atol=1e-4)
  assert model.config.id2label[0] == labels[0]


@pytest.mark.slow
def test_predict_scores_gold_labels_through_a_label_map(finished_run, tmp_path):
  config, workdir, _, _ = finished_run
  run_dir = os.path.join(workdir, identity.run_name(config))
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
