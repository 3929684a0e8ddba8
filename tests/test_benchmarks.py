"""The GPU decoder benchmark runs end to end on a CPU with tiny shapes (what a lent GPU
will run, checked before it is lent): every side trains, prints its figures and the ratio."""

import os
import re
import subprocess
import sys

from tests.conftest import REPO


def test_gpu_lm_step_runs_tiny_on_cpu():
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  out = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "gpu_lm_step.py"),
                        "--tiny", "--sides=fjft,hf", "--steps=1", "--warmup=1"],
                       capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
  assert out.returncode == 0, out.stdout + out.stderr
  for shape in ("gpt2", "llama1b"):
    fjft = re.search(rf"^{shape}\s+fjft\s+2x64\s+[\d.]+M\s+(\d+)\s+[\d.]+%\s+[\d.]+$",
                     out.stdout, re.M)
    hf = re.search(rf"^{shape}\s+hf\s+2x64\s+[\d.]+M\s+(\d+)\s+[\d.]+%\s+[\d.]+\s+[\d.]+x$",
                   out.stdout, re.M)
    assert fjft and hf and int(fjft.group(1)) > 0 and int(hf.group(1)) > 0, out.stdout
    assert re.search(rf"^{shape}\s+fjft: .*attention xla, bf16 matmul peak [\d.]+ TFLOP/s",
                     out.stdout, re.M), out.stdout
