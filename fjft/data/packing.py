"""Causal-LM training examples: token ids plus a loss mask, and rows packed from them.

Three shapes of data become the same LMExample:
  plain text          every token trains (continued pretraining);
  prompt / response   the response (and the end-of-turn token) trains, the prompt does not;
  chat messages       the assistant turns (and their end-of-turn tokens) train, rendered
                      with the model's chat template.
`train_on_prompt=True` trains on every token instead.

Rows are then built either one example per row (padded) or packed: several examples share
a row, each keeping its own segment id and positions that restart at 0, so that attention
stays within an example (fjft.models.decoder.attention_mask) and nothing about a packed
example differs from the same example alone in a row.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from fjft.data.batches import StepBatches, fill_rows
from fjft.data.readers import BadRowStats, bad_row
from fjft.errors import DataError

ROLES = ("system", "user", "assistant")


@dataclasses.dataclass(frozen=True)
class LMExample:
  ids: np.ndarray        # int32 [n]
  loss_mask: np.ndarray  # bool [n]: which tokens are predicted (trained on)
  where: str             # "path:line" of the row it came from

  def __len__(self) -> int:
    return len(self.ids)


def _example(pieces: Sequence[tuple[list[int], bool]], where: str,
             train_on_prompt: bool) -> LMExample:
  ids = [i for piece, _ in pieces for i in piece]
  mask = [train_on_prompt or trains for piece, trains in pieces for _ in piece]
  return LMExample(np.asarray(ids, np.int32), np.asarray(mask, bool), where)


def from_text(tokenizer, text: str, where: str) -> LMExample:
  """Plain text: BOS (if the model has one) + text + EOS; every text token trains."""
  bos = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
  eos = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
  return _example([(bos, False), (tokenizer.encode(text, add_special_tokens=False) + eos, True)],
                  where, False)


def from_prompt_response(tokenizer, prompt: str, response: str, where: str, *,
                         use_chat_template: bool, train_on_prompt: bool = False) -> LMExample:
  """A prompt/response pair, as a one-turn chat when `use_chat_template`, else as
  prompt + response + EOS."""
  if use_chat_template:
    return from_chat(tokenizer, [{"role": "user", "content": prompt},
                                 {"role": "assistant", "content": response}],
                     where, train_on_prompt=train_on_prompt)
  eos = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
  bos = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
  return _example([(bos + tokenizer.encode(prompt, add_special_tokens=False), False),
                   (tokenizer.encode(response, add_special_tokens=False) + eos, True)],
                  where, train_on_prompt)


def check_messages(messages: Any, where: str) -> list[dict[str, str]]:
  """The messages of one chat row, or DataError naming the row and what is wrong."""
  if not isinstance(messages, list) or not messages:
    raise DataError(f"{where}: a chat must be a non-empty list of messages, got "
                    f"{type(messages).__name__}")
  for i, m in enumerate(messages):
    if not isinstance(m, dict) or not isinstance(m.get("content"), str):
      raise DataError(f"{where}: message {i} must be an object with a string 'content'")
    if m.get("role") not in ROLES:
      raise DataError(f"{where}: message {i} has role {m.get('role')!r}; roles are "
                      f"{', '.join(ROLES)}")
    if not isinstance(m.get("reasoning_content", ""), str):
      raise DataError(f"{where}: message {i}'s 'reasoning_content' must be a string")
  if not any(m["role"] == "assistant" for m in messages):
    raise DataError(f"{where}: the chat has no assistant turn, so nothing in it would train")
  # A reply's reasoning (templates such as Qwen3's render it in <think>) is kept.
  return [{k: m[k] for k in ("role", "content", "reasoning_content") if k in m}
          for m in messages]


def from_chat(tokenizer, messages: Any, where: str, *,
              train_on_prompt: bool = False) -> LMExample:
  """A chat rendered with the model's template; the assistant replies train.

  The ids are the whole conversation rendered and tokenized once, exactly as
  transformers' apply_chat_template(tokenize=True) gives them; each reply (from the end
  of the generation prompt before it through its end-of-turn tokens) trains
  (Tokenizer.encode_chat).
  """
  messages = check_messages(messages, where)
  try:
    ids, mask = tokenizer.encode_chat(messages)
  except DataError as e:
    raise DataError(f"{where}: {e}") from e
  if train_on_prompt:
    mask = np.ones_like(mask)
  return LMExample(ids, mask, where)


def check_length(example: LMExample, max_length: int, *, on_bad_row: str,
                 stats: BadRowStats) -> LMExample | None:
  """The example, or None (counted) / DataError when it does not fit the context."""
  if len(example) > max_length:
    bad_row(example.where, "longer than the context",
            f"{len(example)} tokens, more than data.max_length={max_length}",
            on_bad_row=on_bad_row, stats=stats)
    return None
  return example


@dataclasses.dataclass(frozen=True)
class Rows:
  """Fixed-length rows [N, L]: what a batch of causal-LM training is sliced from."""
  input_ids: np.ndarray    # int32
  loss_mask: np.ndarray    # bool
  segment_ids: np.ndarray  # int32, 0 = padding, 1.. = the examples of a row
  positions: np.ndarray    # int32, restarting at 0 per segment

  def __len__(self) -> int:
    return len(self.input_ids)


def _rows(groups: list[list[LMExample]], length: int, pad_id: int) -> Rows:
  n = len(groups)
  out = Rows(np.full((n, length), pad_id, np.int32), np.zeros((n, length), bool),
             np.zeros((n, length), np.int32), np.zeros((n, length), np.int32))
  for r, group in enumerate(groups):
    at = 0
    for seg, ex in enumerate(group, 1):
      k = len(ex)
      out.input_ids[r, at:at + k] = ex.ids
      out.loss_mask[r, at:at + k] = ex.loss_mask
      out.segment_ids[r, at:at + k] = seg
      out.positions[r, at:at + k] = np.arange(k)
      at += k
  return out


def one_per_row(examples: Sequence[LMExample], length: int, pad_id: int) -> Rows:
  """Each example alone in a row of `length` tokens, right-padded."""
  return _rows([[ex] for ex in examples], length, pad_id)


PACK_WINDOW = 64  # open rows searched for room; older rows are closed (keeps packing linear)


def pack(examples: Sequence[LMExample], length: int, pad_id: int) -> Rows:
  """Examples packed into rows of `length` tokens: each goes into the first of the last
  PACK_WINDOW rows with room for it, else starts a row.

  Deterministic for a given order; every example must already fit (check_length).
  """
  groups: list[list[LMExample]] = []
  room: list[int] = []
  for ex in examples:
    if len(ex) > length:
      raise DataError(f"{ex.where}: {len(ex)} tokens do not fit a row of {length}")
    for g in range(max(0, len(groups) - PACK_WINDOW), len(groups)):
      if len(ex) <= room[g]:
        groups[g].append(ex)
        room[g] -= len(ex)
        break
    else:
      groups.append([ex])
      room.append(length - len(ex))
  return _rows(groups, length, pad_id)


class RowBatches(StepBatches):
  """Training batches of rows, reshuffled every epoch; resumable from the step alone."""

  def __init__(self, rows: Rows, batch_size: int, seed: int):
    super().__init__(len(rows), batch_size, seed)
    self.rows = rows

  def batch(self, step: int) -> dict:
    return take(self.rows, self.shuffled(step), self.batch_size)


def take(rows: Rows, idx: np.ndarray, batch_size: int) -> dict:
  """Rows `idx` as a batch of `batch_size` rows; missing rows are empty (nothing trains)."""
  return {"input_ids": fill_rows(rows.input_ids, idx, batch_size),
          "loss_mask": fill_rows(rows.loss_mask, idx, batch_size),
          "segment_ids": fill_rows(rows.segment_ids, idx, batch_size),
          "positions": fill_rows(rows.positions, idx, batch_size)}


def eval_batches(rows: Rows, batch_size: int):
  for start in range(0, len(rows), batch_size):
    yield take(rows, np.arange(start, min(start + batch_size, len(rows))), batch_size)
