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
