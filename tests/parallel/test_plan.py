"""fjft.plan's --devices: counts >= 1, one error naming the flag otherwise."""

import pytest

from fjft.errors import ConfigError
from fjft.parallel.plan import parse_devices


def test_device_counts_parse():
  assert parse_devices("1,8,64") == [1, 8, 64]
  assert parse_devices(" 2 , 4,") == [2, 4]


@pytest.mark.parametrize("text", ["abc", "", ",", "0,8", "-1", "1.5"])
def test_device_counts_below_one_or_not_integers_are_config_errors(text):
  with pytest.raises(ConfigError, match=r"^--devices: comma-separated device counts >= 1"):
    parse_devices(text)


def test_bfloat16_optimizer_state_is_planned_at_half_the_bytes(tiny_bert_dir):
  """optim.state_dtype=bfloat16: the plan counts each moment at 2 bytes a number, and what
  the optimizer really allocates agrees."""
  import os

  import jax

  from fjft.config import experiment as config_lib
  from fjft.parallel import plan
  from fjft.training import optim
  from tests.conftest import REPO
  quickstart = os.path.join(REPO, "experiments", "quickstart.py")
  planned = {}
  for dtype in ("float32", "bfloat16"):
    config = config_lib.load_config(quickstart, [("model.name", tiny_bert_dir),
                                                 ("optim.state_dtype", dtype)])
    params, only = plan.model_params(config)
    planned[dtype] = plan.per_device_bytes(config, params, only, {"fsdp": 1})
    state = jax.eval_shape(optim.make_optimizer(config.optim, 10, params).init, params)
    real = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
    assert abs(planned[dtype]["optimizer"] - real) <= 8, dtype   # (step counts aside)
  assert abs(2 * planned["bfloat16"]["optimizer"] - planned["float32"]["optimizer"]) <= 16
