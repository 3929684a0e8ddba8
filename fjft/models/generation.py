"""Generation from prompt records (a prompt, or chat messages through the model's chat
template), batched with static shapes: `python -m fjft.generate`, and an LM run's
evaluation-time generation."""

from __future__ import annotations

import json

from fjft.errors import DataError
from fjft.models import decoding


def read_prompts(path: str) -> list[tuple[str, dict]]:
  """(where, record) per input line; a bad line is a DataError naming file and line."""
  out = []
  try:
    f = open(path, "rb")   # lines decoded one by one: a bad byte is named by its line
  except OSError as e:
    raise DataError(f"{path}: cannot open ({e.strerror})") from None
  with f:
    for n, raw in enumerate(f, 1):
      where = f"{path}:{n}"
      try:
        line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
      except UnicodeDecodeError as e:
        raise DataError(f"{where}: undecodable bytes (not valid UTF-8: {e.reason} at byte "
                        f"{e.start} of the line)") from None
      if not line.strip():
        continue
      try:
        rec = json.loads(line)
      except json.JSONDecodeError as e:
        raise DataError(f"{where}: not valid JSON ({e.msg})") from None
      if not isinstance(rec, dict) or not (
          isinstance(rec.get("prompt"), str) or _valid_messages(rec.get("messages"))):
        raise DataError(f"{where}: expected {{\"prompt\": \"...\"}} or {{\"messages\": "
                        "[{\"role\": ..., \"content\": ...}, ...]}")
      out.append((where, rec))
  if not out:
    raise DataError(f"{path}: no prompts")
  return out


def references(records: list[tuple[str, dict]]) -> list[str]:
  out = []
  for where, rec in records:
    if not isinstance(rec.get("reference"), str):
      raise DataError(f"{where}: --metrics needs a \"reference\" string on every input line")
    out.append(rec["reference"].strip())
  return out


def _valid_messages(m) -> bool:
  return isinstance(m, list) and bool(m) and all(
      isinstance(x, dict) and isinstance(x.get("role"), str) and isinstance(x.get("content"), str)
      for x in m)


def prompt_ids(tokenizer, rec: dict, use_template: bool) -> list[int]:
  """Token ids of one record, through the chat template when the model has one."""
  has_template = use_template and tokenizer.chat_template is not None
  if "messages" in rec and not has_template:
    raise DataError("messages need a chat template, and this model has none (or "
                    "--nochat_template was given); pass {\"prompt\": ...} instead")
  if has_template:
    messages = rec.get("messages") or [{"role": "user", "content": rec["prompt"]}]
    # The template writes the special tokens itself (as transformers does).
    return tokenizer.encode(tokenizer.apply_chat_template(messages), add_special_tokens=False)
  return tokenizer.encode(rec["prompt"], add_special_tokens=True)


def generate_batched(lm, ids: list[list[int]], where: list[str], batch_size: int,
                     sampling: decoding.SamplingConfig, *, always_full: bool = False
                     ) -> list[list[int]]:
  """The new tokens of each prompt, `batch_size` prompts at a time. A short last chunk is
  filled with copies of its first prompt: same batch shape, so no second compile. With
  `always_full` a lone short chunk is filled too (a run's evaluations generate for dev and
  test sets of different sizes, each several times: one batch shape serves them all)."""
  out = []
  for start in range(0, len(ids), batch_size):
    chunk, at = ids[start:start + batch_size], where[start:start + batch_size]
    fill = batch_size - len(chunk) if always_full or len(ids) > batch_size else 0
    gens = decoding.generate(lm.graphdef, lm.params, lm.init_cache, chunk + [chunk[0]] * fill,
                             pad_id=lm.tokenizer.pad_id, stop_ids=lm.stop_ids(),
                             sampling=sampling, max_context=lm.max_context,
                             where=at + [at[0]] * fill)
    out += gens[:len(chunk)]
  return out


def generate_records(lm, records: list[tuple[str, dict]], sampling: decoding.SamplingConfig,
                     batch_size: int, use_template: bool = True) -> list[dict]:
  """One {"prompt" or "messages", "text", "new_tokens", "stopped"} per input record."""
  stop = lm.stop_ids()
  ids = []
  for where, rec in records:
    try:
      ids.append(prompt_ids(lm.tokenizer, rec, use_template))
    except DataError as e:
      raise DataError(f"{where}: {e}") from None
  gens = generate_batched(lm, ids, [w for w, _ in records], batch_size, sampling)
  out = []
  for (_, rec), g in zip(records, gens):
    stopped = bool(g) and g[-1] in stop
    text = lm.tokenizer.decode(g[:-1] if stopped else g, skip_special_tokens=True)
    key = "messages" if "messages" in rec else "prompt"
    out.append({key: rec[key], "text": text, "new_tokens": len(g), "stopped": stopped})
  return out
