"""The same sweep started twice at once: every run is trained once, by one of them; the
other skips it as held and says so; neither prints a traceback."""

import csv
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.faults import helpers
from tests.sweeps.test_sweep import EXPERIMENT, QUICKSTART_DATA

pytestmark = pytest.mark.slow



def test_a_sweep_started_twice_trains_each_run_once(tiny_bert_dir, tmp_path):
  exp = tmp_path / "twice.py"
  # the sweep tests' tiny experiment, its two good runs
  exp.write_text(EXPERIMENT.format(model=tiny_bert_dir, data=QUICKSTART_DATA,
                                   sweep='sweeps.product({"optim.lr": [1e-3, 3e-4]})'))
  cmd = [sys.executable, "-m", "fjft.sweep", f"--config={exp}", f"--workdir={tmp_path / 'runs'}",
         "--parallel=1"]
  sweep_dir = tmp_path / "runs" / "tiny-sweep"
  first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
  # the second starts once the first is training its first run
  helpers.wait_for(lambda: list(sweep_dir.glob("*/tiny-*/train.lock")), first)
  second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  out_first = first.communicate(timeout=600)[0]
  out_second = second.stdout + second.stderr
  for out, code in ((out_first, first.returncode), (out_second, second.returncode)):
    assert code == 0 and "Traceback" not in out, out[-3000:]
  assert "being trained by another process (pid " in out_second, out_second
  assert "held: lr=0.001" in out_second     # its summary lists the run it skipped
  results = sorted(sweep_dir.glob("*/tiny-*/results.json"))
  assert len(results) == 2
  trained = 0
  for log in sorted((sweep_dir / "logs").glob("*.log")):
    text = log.read_text()
    trained += text.count("done: 8 steps")
    assert text.count("done: 8 steps") == 1, text   # once, and its log intact
  assert trained == 2
  with open(sweep_dir / "summary.csv") as f:   # whichever sweep ended last wrote it
    assert {r["status"] for r in csv.DictReader(f)} <= {"finished", "held"}
  # and a third start finds both finished
  third = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert third.returncode == 0 and third.stdout.count("already finished") == 2, third.stdout
