"""Sweeps: expansion, a real 3-run sweep (one run fails), skipping, summaries, TensorBoard."""

import csv
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from fjft.config import experiment as config_lib
from fjft.config import identity
from fjft.sweeps import grid as sweeps
from fjft.errors import ConfigError
from tests.conftest import REPO

QUICKSTART = os.path.join(REPO, "experiments", "quickstart.py")
QUICKSTART_DATA = os.path.join(REPO, "experiments", "data", "quickstart")


def test_product_and_zip():
  assert sweeps.product({"a": [1, 2]}, {"b": [3, 4]}) == [
      {"a": 1, "b": 3}, {"a": 1, "b": 4}, {"a": 2, "b": 3}, {"a": 2, "b": 4}]
  assert sweeps.product({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
  assert sweeps.zip({"a": [1, 2], "b": [3, 4]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]
  nested = sweeps.product(sweeps.zip({"a": [1, 2], "b": [3, 4]}), {"c": [0, 5]})
  assert nested == [{"a": 1, "b": 3, "c": 0}, {"a": 1, "b": 3, "c": 5},
                    {"a": 2, "b": 4, "c": 0}, {"a": 2, "b": 4, "c": 5}]
  with pytest.raises(ConfigError, match="differ in length"):
    sweeps.zip({"a": [1, 2], "b": [3]})
  with pytest.raises(ConfigError, match="set twice"):
    sweeps.product({"a": [1]}, {"a": [2]})
  with pytest.raises(ConfigError, match="needs a list"):
    sweeps.product({"a": 1})


def test_quickstart_sweep_plan_hashes_match_the_runs_own():
  plan = sweeps.plan(QUICKSTART, "/tmp/nowhere")
  assert len(plan.runs) == 4
  assert plan.swept == ["optim.lr", "optim.warmup_fraction"]
  assert len({r.run_name for r in plan.runs}) == 4
  assert len({r.label for r in plan.runs}) == 4
  for run in plan.runs:
    # the hash the run computes from its own command line
    argv = sweeps.train_command(plan.spec, run)
    overrides = [tuple(a[len("--config."):].split("=", 1)) for a in argv if a.startswith("--config.")]
    assert identity.run_name(config_lib.load_config(QUICKSTART, overrides)) == run.run_name
    assert run.workdir == os.path.join("/tmp/nowhere", "quickstart-sweep", run.label)


def test_unknown_field_in_a_sweep_names_the_closest(tmp_path):
  exp = tmp_path / "exp.py"
  exp.write_text("from fjft.tasks.classify.config import default_config as classify_config\n"
                 "def get_config(arg=None):\n"
                 "  c = classify_config()\n  c.name = 'x'\n  c.data.path = 'd'\n  return c\n"
                 "def sweep():\n  return [{'optim.lrr': 1.0}]\n")
  with pytest.raises(ConfigError, match="did you mean 'optim.lr'"):
    sweeps.plan(str(exp), str(tmp_path))


@pytest.mark.parametrize("sweep_body, message", [
    ("  raise RuntimeError('bad sweep')\n", r"exp.py:8: sweep\(\) raised RuntimeError: bad sweep$"),
    ("  return [{'optim.lr': 1e-4}, {'train.steps': 'abc'}]\n",
     r"exp.py: sweep\(\) run 1 \{'train.steps': 'abc'\}: config field train.steps: cannot parse"),
])
def test_a_sweep_that_fails_names_its_file_line_and_run(tmp_path, sweep_body, message):
  exp = tmp_path / "exp.py"
  exp.write_text("from fjft.tasks.classify.config import default_config as classify_config\n"
                 "def get_config(arg=None):\n"
                 "  c = classify_config()\n  c.name = 'x'\n  c.data.path = 'd'\n  return c\n"
                 "def sweep():\n" + sweep_body)
  with pytest.raises(ConfigError, match=message):
    sweeps.plan(str(exp), str(tmp_path))


EXPERIMENT = '''
"""A sweep on a tiny BERT (THREE_RUNS: the third names a text column that does not exist)."""
from fjft.sweeps import grid as sweeps
from fjft.tasks.classify.config import default_config as classify_config


def get_config(arg=None):
  c = classify_config()
  c.name = "tiny"
  c.model.name = {model!r}
  c.data.path = {data!r}
  c.data.buckets = (32, 64)
  c.data.max_length = 64
  c.train.steps = 8
  c.train.batch_size = 8
  c.train.eval_every = 8
  c.train.eval_batch_size = 64
  c.train.checkpoint_every = 4
  c.optim.lr = 1e-3
  return c


def sweep():
  return {sweep}
'''
THREE_RUNS = ('sweeps.product({"optim.lr": [1e-3, 3e-4]}) + [\n'
              '      {"optim.lr": 1e-3, "data.text_column": "no_such_column"}]')


def _sweep_cli(exp, workdir, *extra):
  return subprocess.run([sys.executable, "-m", "fjft.sweep", f"--config={exp}",
                         f"--workdir={workdir}", *extra],
                        cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny_sweep(tiny_bert_dir, tmp_path_factory):
  root = tmp_path_factory.mktemp("sweep")
  exp = root / "tiny_sweep.py"
  exp.write_text(EXPERIMENT.format(model=tiny_bert_dir, data=QUICKSTART_DATA, sweep=THREE_RUNS))
  workdir = root / "runs"
  first = _sweep_cli(exp, workdir, "--parallel=2", "--config.train.eval_every=4")
  return exp, workdir, first


@pytest.mark.slow
def test_sweep_runs_isolates_the_failure_and_summarises(tiny_sweep):
  exp, workdir, first = tiny_sweep
  out = first.stdout + first.stderr
  assert first.returncode == 1, out        # one run failed: the sweep says so in its exit code
  sweep_dir = workdir / "tiny-sweep"
  with open(sweep_dir / "summary.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["status"] for r in rows] == ["finished", "finished", "failed"]
  assert "no_such_column" in rows[2]["reason"]
  assert "failed: lr=0.001,text_column=no_such_column" in out
  for r in rows[:2]:
    results = json.loads((sweep_dir / r["run"] / f"tiny-{r['hash']}" / "results.json").read_text())
    assert results["config_hash"].startswith(r["hash"])
    assert float(r["best_dev_accuracy"]) == pytest.approx(results["dev"]["accuracy"])
    # the CLI override reached every run: evaluations at steps 4 and 8
    assert [h["step"] for h in results["history"]] == [4, 8]
    assert r["optim.lr"] in ("0.001", "0.0003")
  md = (sweep_dir / "summary.md").read_text()
  assert md.count("\n| ") >= 3 and "Best: `lr=" in md
  png = (sweep_dir / "summary.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
  assert "best: lr=" in out


@pytest.mark.slow
def test_sweep_again_skips_finished_runs(tiny_sweep):
  exp, workdir, _ = tiny_sweep
  sweep_dir = workdir / "tiny-sweep"
  results = sorted(sweep_dir.glob("*/tiny-*/results.json"))
  assert len(results) == 2
  mtimes = [p.stat().st_mtime_ns for p in results]
  again = _sweep_cli(exp, workdir, "--config.train.eval_every=4")
  out = again.stdout + again.stderr
  assert out.count("already finished") == 2, out
  assert [p.stat().st_mtime_ns for p in results] == mtimes
  assert again.returncode == 1                    # the broken run is tried again, and fails again


@pytest.mark.slow
def test_dry_run_and_emit(tiny_sweep):
  exp, workdir, _ = tiny_sweep
  dry = _sweep_cli(exp, workdir, "--dry_run", "--config.train.eval_every=4")
  assert dry.returncode == 0
  assert dry.stdout.count("finished in") == 2 and "new" in dry.stdout
  cmds = _sweep_cli(exp, workdir, "--emit=commands", "--config.train.eval_every=4")
  lines = [l for l in cmds.stdout.splitlines() if l and not l.startswith("#")]
  assert len(lines) == 1 and "--config.data.text_column=no_such_column" in lines[0]
  slurm = _sweep_cli(exp, workdir, "--emit=slurm", "--parallel=2", "--config.train.eval_every=4")
  assert "#SBATCH --array=0-0%2" in slurm.stdout and "SLURM_ARRAY_TASK_ID" in slurm.stdout
  assert subprocess.run(["bash", "-n"], input=slurm.stdout, text=True).returncode == 0


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _get(url, body=None):
  req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                               headers={"X-XSRF-Protected": "1", "Content-Type": "application/json"})
  with urllib.request.urlopen(req, timeout=10) as r:
    return json.loads(r.read())


@pytest.mark.slow
def test_tensorboard_shows_every_run_with_scalars_and_hparams(tiny_sweep):
  pytest.importorskip("tensorboard")
  _, workdir, _ = tiny_sweep
  sweep_dir = workdir / "tiny-sweep"
  port = _free_port()
  proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", f"--logdir={sweep_dir}",
                           f"--port={port}", "--host=127.0.0.1", "--load_fast=false",
                           "--reload_interval=1"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  base = f"http://127.0.0.1:{port}"
  try:
    deadline, tags = time.time() + 90, {}
    while time.time() < deadline:
      try:
        tags = _get(base + "/data/plugin/scalars/tags")
        if len(tags) >= 2 and all("hparam/dev_accuracy" in t for t in tags.values()):
          break
      except OSError:
        pass
      time.sleep(1)
    runs = sorted(tags)
    assert len(runs) == 2, (runs, proc.stderr.read1() if proc.poll() is not None else "")
    for run in runs:
      # readable: swept values, the name and the hash
      assert run.startswith("lr=0.00") and "/tiny-" in run
      assert {"train/loss", "train/lr", "dev/accuracy"} <= set(tags[run])
    experiment = _get(base + "/data/plugin/hparams/experiment", {"experimentName": ""})
    hparams = {h["name"] for h in experiment["hparamInfos"]}
    assert "optim.lr" in hparams
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert "hparam/dev_accuracy" in metrics
    groups = _get(base + "/data/plugin/hparams/session_groups", {
        "experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS",
                                                  "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [], "startIndex": 0, "sliceSize": 100})
    lrs = sorted(g["hparams"]["optim.lr"] for g in groups["sessionGroups"])
    assert lrs == [0.0003, 0.001]
    for g in groups["sessionGroups"]:
      values = {m["name"]["tag"]: m["value"] for s in g["sessions"] for m in s["metricValues"]}
      assert 0.0 <= values["hparam/dev_accuracy"] <= 1.0
  finally:
    proc.terminate()
    proc.wait(timeout=30)
