"""Duplicates within a split and overlap between splits: found by a key, dropped and counted.

Each dropped item is counted in a readers.BadRowStats under the report's reason
(fjft.data.report: DUPLICATES, OVERLAP, OVERLAP_TEST), with the first few as examples
"path:line: same <what> as path:line", so the data report accounts for it.
"""

from __future__ import annotations

from typing import Callable, Hashable, Mapping, Sequence, TypeVar

from fjft.data.readers import BadRowStats
from fjft.data.report import DUPLICATES, OVERLAP, OVERLAP_TEST

T = TypeVar("T")


def drop_repeats(items: Sequence[T], key: Callable[[T], Hashable], where: Callable[[T], str],
                 removed: BadRowStats, *, what: str = "example",
                 merge: Callable[[T, T], None] | None = None) -> list[T]:
  """`items` without those whose key an earlier item has; `merge(repeat, first)`, when
  given, is called for each repeat before it is dropped (to keep what it adds)."""
  first: dict[Hashable, T] = {}
  kept = []
  for item in items:
    earlier = first.setdefault(key(item), item)
    if earlier is item:
      kept.append(item)
      continue
    if merge is not None:
      merge(item, earlier)
    removed.add(where(item), DUPLICATES, f"same {what} as {where(earlier)}")
  return kept


def drop_seen(items: Sequence[T], key: Callable[[T], Hashable], where: Callable[[T], str],
              seen: Mapping[Hashable, str], removed: BadRowStats, *, reason: str,
              what: str = "example") -> list[T]:
  """`items` without those whose key is in `seen` (key -> where that item is), which are
  counted under `reason`."""
  kept = []
  for item in items:
    other = seen.get(key(item))
    if other is None:
      kept.append(item)
    else:
      removed.add(where(item), reason, f"same {what} as {other}")
  return kept


def dedup_splits(splits: Mapping[str, Sequence[T]], key: Callable[[T], Hashable],
                 where: Callable[[T], str], removed: Mapping[str, BadRowStats], *,
                 what: str = "example",
                 merge: Callable[[T, T], None] | None = None) -> dict[str, list[T]]:
  """{split: items kept}: repeats dropped within train and within dev; train items that
  are also in dev or test, and dev items also in test, dropped. Test is left as it is,
  so that its size stays comparable with published results."""
  out = {name: list(items) for name, items in splits.items()}
  for name in ("train", "dev"):
    if name in out:
      out[name] = drop_repeats(out[name], key, where, removed[name], what=what, merge=merge)
  later: dict[Hashable, str] = {}  # key -> where it first is in a later split
  for name in ("test", "dev"):
    if name == "dev" and "dev" in out:
      out["dev"] = drop_seen(out["dev"], key, where, later, removed["dev"], reason=OVERLAP_TEST,
                             what=what)
    for item in out.get(name, []):
      later.setdefault(key(item), where(item))
  if "train" in out:
    out["train"] = drop_seen(out["train"], key, where, later, removed["train"], reason=OVERLAP,
                             what=what)
  return out
