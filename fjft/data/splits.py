"""What splitting means for every task: the one hashed splitter, and split-file discovery.

hashed_choice() picks a held-out fraction of items by sha256 of (seed, key), so whether
an item is held out depends on its own key, not on the order of the rows: tasks carve dev
(and test) from train with it, optionally stratified (e.g. by label). split_files() finds
the train/dev/test files of a data folder (SPLIT_FILE_STEMS).
"""

from __future__ import annotations

import collections
import hashlib
import os
from typing import Hashable, Sequence

from fjft.data import readers
from fjft.errors import DataError

SPLIT_FILE_STEMS = {"train": ("train",), "dev": ("dev", "validation", "valid"), "test": ("test",)}


def hash_rank(seed: int, key: str) -> bytes:
  """Where `key` ranks in the hashed order of `seed`: sha256, not hash() or an RNG stream,
  so it is the same on every machine and Python version."""
  return hashlib.sha256(f"{seed}\0{key}".encode("utf-8")).digest()


def held_out_count(n: int, fraction: float) -> int:
  """How many of `n` items a `fraction` holds out: n * fraction, rounded half up."""
  return int(n * fraction + 0.5)


def hashed_choice(keys: Sequence[str], fraction: float, seed: int, *, salt: str = "",
                  strata: Sequence[Hashable] | None = None, keep_one: bool = False) -> set[int]:
  """The indices of a hashed `fraction` of `keys`: the one splitter of every task.

  The held_out_count(n, fraction) keys first in the order of hash_rank(seed, salt + key)
  (position breaks ties) are chosen, so whether an item is chosen depends on its own key,
  not on the order of the rows. With `strata` (e.g. each example's label) every stratum
  gives its own fraction; `keep_one` leaves at least one item of each stratum unchosen.
  """
  groups: dict[Hashable, list[int]] = collections.defaultdict(list)
  for i in range(len(keys)):
    groups[strata[i] if strata is not None else None].append(i)
  chosen: set[int] = set()
  for indices in groups.values():
    n = held_out_count(len(indices), fraction)
    if keep_one:
      n = max(min(n, len(indices) - 1), 0)
    ranked = sorted(indices, key=lambda i: (hash_rank(seed, salt + keys[i]), i))
    chosen.update(ranked[:n])
  return chosen


def split_files(folder: str, extensions=readers.SUPPORTED_EXTENSIONS) -> dict[str, str]:
  """{split: file} for the train/dev/test files in `folder`; train is required."""
  names = sorted(os.listdir(folder))
  found = {}
  for split, stems in SPLIT_FILE_STEMS.items():
    matches = [n for n in names if readers.file_stem(n) in stems
               and readers.file_ext(n) in extensions]
    if len(matches) > 1:
      raise DataError(f"data.path: {folder} holds several {split} files ({', '.join(matches)}); "
                      "keep one")
    if matches:
      found[split] = os.path.join(folder, matches[0])
  if "train" not in found:
    exts = "|".join(e.lstrip(".") for e in extensions)
    raise DataError(f"data.path: {folder} has no train file (expected train.{{{exts}}}, each "
                    f"optionally .gz, and optionally dev.<ext> and test.<ext>; found: "
                    f"{', '.join(names) or 'nothing'})")
  return found

