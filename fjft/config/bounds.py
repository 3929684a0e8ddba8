"""The allowed ranges of numeric config fields, checked when a config loads.

A size of 0, a negative interval or a fraction above 1 would otherwise surface mid-run as
a ZeroDivisionError, an empty split or a loop that never evaluates. Each table maps a field
to its Range; the fields every task shares are in fjft.config.defaults.BOUNDS, a task's own
in its config module (the Task's `bounds`). A field a config does not have is not checked.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any


@dataclasses.dataclass(frozen=True)
class Range:
  """low <= value (< when low_open) and value <= high (< when high_open); `also` are
  values allowed outside the range (mesh axes: -1 takes the devices left over)."""
  low: float | None = None
  high: float | None = None
  low_open: bool = False
  high_open: bool = False
  integer: bool = False
  also: tuple = ()

  def problem(self, value: Any) -> str | None:
    """Why `value` is not allowed, or None when it is."""
    kind = "an integer" if self.integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      return f"must be {kind} {self.describe()}"
    if self.integer and not isinstance(value, int):
      return f"must be {kind} {self.describe()}"
    if value in self.also:
      return None
    if ((isinstance(value, float) and not math.isfinite(value))
        or (self.low is not None and (value <= self.low if self.low_open else value < self.low))
        or (self.high is not None and (value >= self.high if self.high_open else value > self.high))):
      return f"must be {kind} {self.describe()}"
    return None

  def describe(self) -> str:
    if self.low is not None and self.high is not None:
      text = (f"in {'(' if self.low_open else '['}{_num(self.low)}, "
              f"{_num(self.high)}{')' if self.high_open else ']'}")
    elif self.low is not None:
      text = f"{'>' if self.low_open else '>='} {_num(self.low)}"
    elif self.high is not None:
      text = f"{'<' if self.high_open else '<='} {_num(self.high)}"
    else:
      text = ""
    if self.also:
      text += " or " + " or ".join(map(str, self.also))
    return text.strip()


def _num(x: float) -> str:
  return str(int(x)) if float(x).is_integer() else str(x)


# The shapes that recur.
POSITIVE_INT = Range(1, integer=True)               # sizes, step counts, intervals
NON_NEGATIVE_INT = Range(0, integer=True)           # counts where 0 means off
POSITIVE = Range(0, low_open=True)                  # rates, temperatures, scales
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1, high_open=True)              # a share of the data held out
UNIT = Range(0, 1)                                   # a share that may be all of it
PROBABILITY = Range(0, 1, high_open=True)           # dropout: 1 would drop everything
DECAY = Range(0, 1, high_open=True)                 # Adam's betas
SEED = Range(0, 2**32 - 1, integer=True)            # what numpy, sklearn and JAX all take

# Length-bucket fields (a tuple of padded lengths) -> the maximum length they pad up to.
BUCKETS = {"data.buckets": "data.max_length", "data.query_buckets": "data.query_max_length",
           "data.doc_buckets": "data.doc_max_length"}


def check(values: dict[str, Any], bounds: dict[str, Range]) -> list[tuple[str, str]]:
  """(field, why) for every field of `values` (flat dotted keys) outside its bounds."""
  return [(field, why) for field, rule in bounds.items()
          if field in values and (why := rule.problem(values[field])) is not None]


def check_buckets(values: dict[str, Any]) -> list[tuple[str, str]]:
  """(field, why) for each length-bucket field that is not a non-empty tuple of integers
  >= 1 whose smallest is at most its maximum length (else every batch pads past it)."""
  out = []
  for field, max_field in BUCKETS.items():
    if field not in values:
      continue
    value = values[field]
    if (not isinstance(value, (tuple, list)) or not value
        or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in value)):
      out.append((field, "must be a non-empty tuple of integers >= 1, e.g. (32, 64)"))
    elif isinstance(values.get(max_field), int) and min(value) > values[max_field]:
      out.append((field, f"must hold a length <= {max_field}={values[max_field]}: "
                         f"every batch would be padded to {min(value)}"))
  return out
