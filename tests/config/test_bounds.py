"""Every numeric config field has a range, checked when a config loads, naming the field."""

import pytest

from fjft import tasks
from fjft.config import bounds, defaults
from fjft.config import experiment as config_lib
from fjft.errors import ConfigError


def _numeric_fields(config) -> dict:
  values = {k: config_lib.get_field(config, k) for k in config_lib.flat_keys(config)}
  return {k: v for k, v in values.items()
          if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _outside(rule: bounds.Range):
  """Values the rule refuses: just past each end, a fraction for an integer, a string."""
  out = ["many", float("nan")]
  if rule.low is not None:
    out.append(rule.low if rule.low_open else rule.low - 1)
  if rule.high is not None:
    out.append(rule.high if rule.high_open else rule.high + 1)
  if rule.integer:
    out.append(1.5)
  return [v for v in out if v not in rule.also]


@pytest.mark.parametrize("name", sorted(tasks.TASKS))
def test_every_numeric_field_of_every_task_has_a_range_its_default_satisfies(name):
  task = tasks.get(name)
  config = task.default_config()
  rules = {**defaults.BOUNDS, **task.bounds}
  missing = sorted(set(_numeric_fields(config)) - set(rules))
  assert not missing, f"task {name}: numeric fields without a range in BOUNDS: {missing}"
  assert not bounds.check(_numeric_fields(config), rules)


@pytest.mark.parametrize("name", sorted(tasks.TASKS))
def test_a_value_outside_a_fields_range_is_a_config_error_naming_it(name):
  task = tasks.get(name)
  for field, rule in {**defaults.BOUNDS, **task.bounds}.items():
    for value in _outside(rule):
      d = config_lib.to_dict(task.default_config())
      section, _, leaf = field.rpartition(".")
      (d[section] if section else d)[leaf] = value
      with pytest.raises(ConfigError, match=rf"config field {field} must be .*\(got "):
        config_lib.from_dict(d)


def test_mesh_axes_take_minus_one_for_the_devices_left_over():
  d = config_lib.to_dict(tasks.get("classify").default_config())
  d["mesh"].update(data=1, fsdp=-1)
  config_lib.from_dict(d)
  d["mesh"]["fsdp"] = -2
  with pytest.raises(ConfigError, match=r"mesh.fsdp must be an integer >= 1 or -1"):
    config_lib.from_dict(d)


def test_range_descriptions():
  assert bounds.FRACTION.problem(1.0) == "must be a number in [0, 1)"
  assert bounds.POSITIVE.problem(0) == "must be a number > 0"
  assert bounds.POSITIVE_INT.problem(True) == "must be an integer >= 1"
  assert bounds.UNIT.problem(1) is None and bounds.POSITIVE.problem(1e-9) is None
