"""Config loading, overrides, unknown fields and the run hash."""

import os
import subprocess
import sys

import pytest

from fjft.config import experiment as config_lib
from fjft.config import identity
from fjft.errors import ConfigError

from tests.conftest import REPO
QUICKSTART = os.path.join(REPO, "experiments", "quickstart.py")


def test_required_fields_present_in_every_experiment():
  for name in ("quickstart.py", "sentiment_sst2.py", "intents_banking77.py"):
    c = config_lib.load_config(os.path.join(REPO, "experiments", name))
    for field in config_lib.REQUIRED_FIELDS:
      config_lib.get_field(c, field)


def test_override_parses_to_field_type():
  c = config_lib.load_config(QUICKSTART, [("optim.lr", "3e-4"), ("train.steps", "7"),
                                          ("data.buckets", "(16, 32)"), ("train.progress", "false")])
  assert c.optim.lr == 3e-4 and isinstance(c.optim.lr, float)
  assert c.train.steps == 7
  assert tuple(c.data.buckets) == (16, 32)
  assert c.train.progress is False


def test_unknown_field_names_closest():
  with pytest.raises(ConfigError, match=r"unknown config field 'optim\.lrr'.*'optim\.lr'"):
    config_lib.load_config(QUICKSTART, [("optim.lrr", "1e-4")])


def test_bad_value_names_field():
  with pytest.raises(ConfigError, match="train.steps"):
    config_lib.load_config(QUICKSTART, [("train.steps", "many")])
  with pytest.raises(ConfigError, match="train.steps"):
    config_lib.load_config(QUICKSTART, [("train.steps", "0")])
  with pytest.raises(ConfigError, match="grad_accum"):
    config_lib.load_config(QUICKSTART, [("train.grad_accum", "5")])


@pytest.mark.parametrize("field", ["train.eval_every", "train.log_every", "train.checkpoint_every"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_step_intervals_below_one_are_config_errors_naming_the_field(field, value):
  # the loop takes `step % every`: 0 would be a ZeroDivisionError mid-run, -1 never fires
  with pytest.raises(ConfigError, match=rf"config field {field} must be an integer >= 1 .got {value}"):
    config_lib.load_config(QUICKSTART, [(field, value)])
  with pytest.raises(ConfigError, match=rf"config field {field} must be an integer >= 1"):
    config = config_lib.load_config(QUICKSTART)
    d = config_lib.to_dict(config)
    section, leaf = field.split(".")
    d[section][leaf] = int(value)
    config_lib.from_dict(d)   # a run's saved config.json is checked the same way
  assert config_lib.get_field(config_lib.load_config(QUICKSTART, [(field, "1")]), field) == 1


def test_cli_with_eval_every_zero_stops_before_training(tmp_path):
  r = subprocess.run([sys.executable, "-m", "fjft.train", f"--config={QUICKSTART}",
                      f"--workdir={tmp_path}", "--config.train.eval_every=0"],
                     cwd=REPO, capture_output=True, text=True, timeout=120)
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
  assert "config field train.eval_every must be an integer >= 1" in r.stderr
  assert not os.listdir(tmp_path)


def test_config_arg():
  c = config_lib.load_config(QUICKSTART + ":steps=9,lr=0.001")
  assert c.train.steps == 9 and c.optim.lr == 0.001
  with pytest.raises(ConfigError, match="steps"):
    config_lib.load_config(QUICKSTART + ":stepz=9")


def test_missing_file():
  with pytest.raises(ConfigError, match="does not exist"):
    config_lib.load_config("experiments/nope.py")


def test_hash_ignores_non_identity_fields_only():
  base = identity.config_hash(config_lib.load_config(QUICKSTART))
  for key, value in [("train.log_every", "3"), ("train.checkpoint_every", "11"),
                     ("train.keep_checkpoints", "5"), ("train.progress", "false")]:
    assert identity.config_hash(config_lib.load_config(QUICKSTART, [(key, value)])) == base
  for key, value in [("optim.lr", "1e-3"), ("seed", "1"), ("train.steps", "3"),
                     ("data.path", "elsewhere")]:
    assert identity.config_hash(config_lib.load_config(QUICKSTART, [(key, value)])) != base


def test_hash_stable_across_processes():
  code = ("from fjft.config import experiment as c; from fjft.config import identity; "
          f"print(identity.config_hash(c.load_config({QUICKSTART!r})))")
  hashes = set()
  for seed in ("0", "1", "12345"):
    env = dict(os.environ, PYTHONHASHSEED=seed)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=REPO)
    hashes.add(out.stdout.strip())
  assert len(hashes) == 1
  assert hashes.pop() == identity.config_hash(config_lib.load_config(QUICKSTART))


def _changed(value):
  if isinstance(value, bool):
    return not value
  if isinstance(value, int):
    return value + 1
  if isinstance(value, float):
    return value * 2 + 1
  if isinstance(value, (tuple, list)):
    return type(value)(value) + type(value)([999])
  return str(value) + "x"


def test_every_field_but_the_non_identity_ones_changes_the_hash():
  base_config = config_lib.load_config(QUICKSTART)
  base = identity.config_hash(base_config)
  keys = config_lib.flat_keys(base_config)
  assert len(keys) > 40
  lora = config_lib.load_config(QUICKSTART, [("peft.method", "lora")])
  assert identity.config_hash(lora) != base
  for key in keys:
    # peft's settings count once peft is on (and are left out while it is off)
    on = key.startswith("peft.") and key != "peft.method"
    config = config_lib.load_config(QUICKSTART, [("peft.method", "lora")] if on else [])
    config_lib.set_field(config, key, _changed(config_lib.get_field(config, key)))
    same = identity.config_hash(config) == (identity.config_hash(lora) if on else base)
    # the mesh is layout: hashed as one fixed value whatever it is set to
    layout = key.split(".")[0] in identity.HASHED_AS
    assert same == (key in identity.NON_IDENTITY_FIELDS or layout), key


def test_canonical_form_is_pinned():
  # The hash is sha256 of exactly this text on every machine: sorted keys, no spaces,
  # shortest round-trip floats, ASCII only.
  d = {"seed": 0, "name": "é", "optim": {"lr": 1e-4, "b2": 0.999}, "buckets": [16, 32]}
  text = identity.canonical_json(d, identity_only=True)
  assert text == '{"buckets":[16,32],"name":"\\u00e9","optim":{"b2":0.999,"lr":0.0001},"seed":0}'
  assert identity.config_hash(d) == __import__("hashlib").sha256(text.encode()).hexdigest()


def _experiment(tmp_path, body: str, name="exp.py"):
  path = tmp_path / name
  path.write_text(body)
  return str(path)


CLASSIFY = "from fjft.tasks.classify.config import default_config\n"


@pytest.mark.parametrize("body, message", [
    ("def get_config(arg=None):\n  raise ValueError('boom')\n",
     r"exp.py:2: get_config\(None\) raised ValueError: boom$"),
    ("import no_such_module_here\ndef get_config(arg=None):\n  return 1\n",
     r"exp.py:1: importing it raised ModuleNotFoundError: No module named 'no_such_module_here'"),
    ("def get_config():\n  return 1\n", r"exp.py: get_config\(None\) raised TypeError: "),
    (CLASSIFY + "def get_config(arg=None):\n  c = default_config()\n  c.train.steps = 'abc'\n"
     "  return c\n", r"exp.py:4: get_config\(None\) raised TypeError: .*'steps'"),
    ("def get_config(arg=None):\n  return {'name': 'x'}\n",
     r"get_config must return an ml_collections.ConfigDict \(got dict\)"),
    ("x = 1\0\n", r"exp.py: syntax error in experiment file: .*null bytes"),
])
def test_an_experiment_file_that_fails_is_a_config_error_naming_file_and_line(tmp_path, body, message):
  with pytest.raises(ConfigError, match=message):
    config_lib.load_config(_experiment(tmp_path, body))


def test_a_config_error_of_the_experiment_itself_is_kept():
  with pytest.raises(ConfigError, match=r"^config arg steps: cannot parse 'abc' as int$"):
    config_lib.load_config(QUICKSTART + ":steps=abc")
  with pytest.raises(ConfigError, match=r"expected key=value with key in \['lr', 'steps'\]$"):
    config_lib.load_config(QUICKSTART + ":steps")


def test_an_experiment_file_that_is_not_python(tmp_path):
  with pytest.raises(ConfigError, match=r"is not a Python file \(\.py\)"):
    config_lib.load_config(_experiment(tmp_path, "x", name="exp.txt"))


def test_a_field_get_config_adds_is_an_error_naming_the_closest(tmp_path):
  path = _experiment(tmp_path, CLASSIFY + "def get_config(arg=None):\n  c = default_config()\n"
                     "  c.train.stepz = 3\n  return c\n")
  with pytest.raises(ConfigError, match=r"exp.py: get_config sets 'train.stepz', which is not a "
                     r"field of a classify config; did you mean 'train.steps'\?"):
    config_lib.load_config(path)


@pytest.mark.parametrize("value, message", [
    ("(0,)", "must be a non-empty tuple of integers >= 1"),
    ("()", "must be a non-empty tuple of integers >= 1"),
    ("('a',)", "must be a non-empty tuple of integers >= 1"),
    ("(1e9,)", "must be a non-empty tuple of integers >= 1"),
    ("(1000000000,)", "must hold a length <= data.max_length=64"),
])
def test_length_buckets_are_checked(value, message):
  with pytest.raises(ConfigError, match=rf"config field data.buckets {message}"):
    config_lib.load_config(QUICKSTART, [("data.buckets", value)])
  assert config_lib.load_config(QUICKSTART, [("data.buckets", "(64, 16)")]).data.buckets == (64, 16)


@pytest.mark.parametrize("name", ["", "  ", "../../etc", "a/b", "a\\b"])
def test_a_run_name_that_is_not_one_directory_name_is_refused(name):
  with pytest.raises(ConfigError, match=r"config field name must be a non-empty name"):
    config_lib.load_config(QUICKSTART, [("name", name)])


def test_seeds_beyond_32_bits_are_refused():
  for field in ("seed", "data.split_seed"):
    with pytest.raises(ConfigError, match=rf"{field} must be an integer in \[0, 4294967295\]"):
      config_lib.load_config(QUICKSTART, [(field, str(2**32))])
