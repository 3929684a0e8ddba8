"""Scale-out: the same run on 8 devices under three meshes, and on 2 processes, as on one.

The 8 devices are simulated CPU devices, in a subprocess (tests/parallel/scale_out_worker.py) so
the rest of the suite keeps one device; the 2 processes are real ones on localhost,
joined by jax.distributed with gloo collectives, started by launch/multihost_local.sh.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fjft.config import experiment as config_lib
from fjft.config import identity
from fjft.parallel import distributed
from fjft.run import opened
from fjft.errors import ConfigError
from tests.conftest import REPO, cli_args, QUICKSTART


@pytest.fixture(scope="module")
def eight_devices(tiny_bert_dir, tiny_llama_dir, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("eight")
  out = tmp / "out.json"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  done = subprocess.run([sys.executable, os.path.join(REPO, "tests", "parallel", "scale_out_worker.py"),
                         tiny_bert_dir, tiny_llama_dir, str(tmp), str(out)],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("model", ["encoder", "decoder"])
def test_eight_device_meshes_give_the_one_device_loss_curve(eight_devices, model):
  runs = eight_devices[model]
  one = np.asarray(runs["one"])
  assert len(one) == 5 and abs(one[-1] - one[0]) > 1e-3  # the steps do train
  for mesh in ("data8", "fsdp8", "mixed"):
    np.testing.assert_allclose(runs[mesh], one, rtol=0, atol=1e-5, err_msg=mesh)
  for kind in ("param_bytes", "opt_bytes"):   # AdamW's moments are laid out like the params
    bytes_ = runs[kind]
    assert bytes_["data8"] == bytes_["one"], kind    # data parallel: a whole copy per device
    assert bytes_["fsdp8"] < bytes_["one"] / 4, kind  # fully sharded: about an eighth each
    assert bytes_["mixed"] < bytes_["one"] / 2, kind


@pytest.mark.slow
def test_the_memory_plan_matches_what_the_devices_hold(eight_devices, tiny_bert_dir):
  """fjft.plan computes from shapes what the 8-device runs measured on their arrays."""
  from fjft.parallel import plan
  config = config_lib.load_config(QUICKSTART, [("model.name", tiny_bert_dir)])
  params, only = plan.model_params(config)
  measured = eight_devices["encoder"]
  for mesh, axes in (("one", {}), ("data8", {"data": 8}), ("fsdp8", {"fsdp": 8}),
                     ("mixed", {"data": 2, "fsdp": 2, "tensor": 2})):
    planned = plan.per_device_bytes(config, params, only, axes)
    assert planned["params"] == measured["param_bytes"][mesh], mesh
    assert planned["optimizer"] == measured["opt_bytes"][mesh], mesh
    assert planned["grads"] == planned["params"]   # full fine-tuning: every param trains


@pytest.mark.slow
def test_a_batch_the_mesh_cannot_split_is_a_config_error(eight_devices):
  assert eight_devices["batch_error"].startswith(
      "config field train.batch_size=12 does not divide into the 8 batch shards of the mesh")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["encoder", "decoder"])
def test_an_fsdp_checkpoint_resumes_under_another_mesh(eight_devices, model):
  restored = eight_devices[model]["restored"]
  assert restored["mixed"] == {"equal": True, "step": 5, "devices": 8,
                               "mesh": {"data": 2, "fsdp": 2, "tensor": 2}}
  assert restored["one"] == {"equal": True, "step": 5, "devices": 1,
                             "mesh": {"data": 1, "fsdp": 1, "tensor": 1}}


@pytest.mark.slow
def test_two_processes_train_stop_resume_and_match_one_process(finished_run, tiny_bert_dir,
                                                                tmp_path):
  """launch/multihost_local.sh: 2 processes x 1 CPU device each, stopped by SIGTERM after
  the first checkpoint and started again: the losses, metrics and params of one process."""
  config, workdir, reference, _ = finished_run
  cmd = cli_args(tiny_bert_dir, str(tmp_path), main=("bash", "launch/multihost_local.sh"))
  env = dict(os.environ, NUM_PROCESSES="2", PYTHON=sys.executable, PYTHONPATH=REPO,
             PYTHONUNBUFFERED="1")
  run_dir = os.path.join(str(tmp_path), identity.run_name(config))
  last = os.path.join(run_dir, "checkpoints", "last")
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if os.path.isdir(last) and any(s.isdigit() for s in os.listdir(last)):
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  out = proc.communicate(timeout=240)[0]
  assert proc.returncode == 130, out[-3000:]   # both processes stopped, at the same step
  assert "saved a checkpoint" in out
  stopped_at = max(int(s) for s in os.listdir(last) if s.isdigit())
  assert 2 <= stopped_at < 12
  assert not os.path.exists(os.path.join(run_dir, "results.json"))   # stopped, not finished

  done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  assert f"resuming from the checkpoint at step {stopped_at}" in done.stdout
  assert "2 processes" in done.stdout
  results = json.load(open(os.path.join(run_dir, "results.json")))
  assert results["step"] == 12 and results["best_step"] == reference["best_step"]
  np.testing.assert_allclose(np.asarray(results["train_loss"]),
                             np.asarray(reference["train_loss"]), rtol=0, atol=1e-5)
  for split in ("dev", "test"):
    for metric, value in reference[split].items():
      assert abs(results[split][metric] - value) <= 1e-4, (split, metric)
  env_json = json.load(open(os.path.join(run_dir, "env.json")))
  assert env_json["devices"]["processes"] == 2
  # the 2-process run's best checkpoint loads on this one-device process
  one = opened.open_run(os.path.join(workdir, identity.run_name(config)))
  two = opened.open_run(run_dir)
  for a, b in zip(jax_leaves(one.params), jax_leaves(two.params)):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def jax_leaves(tree):
  import jax
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_launch_scripts_dry_run_print_the_command(tmp_path):
  args = [f"--config={QUICKSTART}", f"--workdir={tmp_path}", "--config.train.steps=3"]
  env = dict(os.environ, DRY_RUN="1", NUM_PROCESSES="3", PYTHON="python")
  for script, expect in (("local.sh", 1), ("multihost_local.sh", 3), ("slurm.sbatch", 1),
                         ("tpu_vm.sh", 1)):
    extra = {"TPU_NAME": "my-tpu", "ZONE": "us-central2-b"} if script == "tpu_vm.sh" else {}
    done = subprocess.run(["bash", os.path.join("launch", script), *args], cwd=REPO,
                          env=dict(env, **extra), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (script, done.stderr)
    lines = [l for l in done.stdout.splitlines() if "fjft.train" in l]
    assert len(lines) == expect, (script, done.stdout)
    for line in lines:
      assert "--config.train.steps=3" in line and "--workdir=" in line, line
      assert ("--distributed" in line) == (script != "local.sh"), line
    assert not os.listdir(tmp_path)   # nothing ran


def test_distributed_layout_from_the_environment():
  assert distributed.layout_from_env({}) == {}
  assert distributed.layout_from_env({"FJFT_COORDINATOR": "h:1", "FJFT_NUM_PROCESSES": "2",
                                      "FJFT_PROCESS_ID": "1"}) == {
      "coordinator_address": "h:1", "num_processes": 2, "process_id": 1}
  with pytest.raises(ConfigError, match="missing FJFT_PROCESS_ID"):
    distributed.layout_from_env({"FJFT_COORDINATOR": "h:1", "FJFT_NUM_PROCESSES": "2"})
  with pytest.raises(ConfigError, match="FJFT_PROCESS_ID=2 is not in"):
    distributed.layout_from_env({"FJFT_COORDINATOR": "h:1", "FJFT_NUM_PROCESSES": "2",
                                 "FJFT_PROCESS_ID": "2"})


def test_the_mesh_is_layout_not_identity():
  """Changing the mesh keeps the run's name, so the run resumes on the new mesh."""
  a = config_lib.load_config(QUICKSTART, [])
  b = config_lib.load_config(QUICKSTART, [("mesh.data", "1"), ("mesh.fsdp", "-1")])
  assert identity.run_name(a) == identity.run_name(b)


def test_mesh_axes_that_do_not_divide_a_dimension_replicate_it():
  from jax.sharding import PartitionSpec as P
  from fjft.parallel import mesh as mesh_lib
  sizes = {"data": 2, "fsdp": 4, "tensor": 4}
  # 30522 vocabulary rows cannot be split 4 ways; 384 features can
  assert mesh_lib.fit_spec(P("tensor", "fsdp"), (30522, 384), sizes) == P(None, "fsdp")
  assert mesh_lib.fit_spec(P(("data", "fsdp")), (6,), sizes) == P("data")
  assert mesh_lib.shard_shape((30522, 384), P(None, "fsdp"), sizes) == (30522, 96)
  assert mesh_lib.shard_shape((16, 8), P(("data", "fsdp"), "tensor"), sizes) == (2, 2)


def test_a_mesh_the_devices_cannot_hold_is_a_config_error():
  from fjft.parallel import mesh as mesh_lib
  with pytest.raises(ConfigError, match="needs 8 devices, found 1"):
    mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  with pytest.raises(ConfigError, match="at most one axis may be -1"):
    mesh_lib.make_mesh({"data": -1, "fsdp": -1, "tensor": 1})
  assert dict(mesh_lib.make_mesh({"data": 1, "fsdp": -1, "tensor": 1}).shape) == {
      "data": 1, "fsdp": 1, "tensor": 1}
