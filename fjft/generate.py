"""python -m fjft.generate (--model=<name|.gguf|HF folder> | --run=<run dir>)
                         (--prompt=<text> | --input=<prompts.jsonl>) --output=<out.jsonl>
                         [--max_new_tokens=N --temperature=T --top_k=K --top_p=P --seed=S]

Writes one line per prompt: {"prompt" or "messages": ..., "text": <generated text>,
"new_tokens": n, "stopped": bool}. Input lines are {"prompt": "..."} or {"messages":
[{"role": ..., "content": ...}, ...]}; the model's chat template is applied when it has
one (--nochat_template sends prompts as raw text). Greedy when --temperature=0.
`--model` runs a pretrained model zero-shot, before any fine-tuning. With
--metrics=bleu,chrf,rougeL every input line also holds a "reference" text, and the scores
of the generations against the references are printed and written to <output>.metrics.json.
"""

from __future__ import annotations

import json
import sys
import time

from absl import app, flags

from fjft import allocator, cli
from fjft.models import decoding
from fjft.errors import DataError, FjftError, exit_on_user_error

if __name__ == "__main__":
  allocator.reexec()  # before anything allocates: see fjft/allocator.py
  flags.DEFINE_string("model", None, "Registered decoder name, .gguf file or HF folder.")
  flags.DEFINE_string("run", None, "A fine-tuned decoder run directory.")
  flags.DEFINE_string("adapter", None, "With --model: a PEFT LoRA adapter folder (fjft's "
                      "export --format=peft, or one trained with peft), merged into the model.")
  flags.DEFINE_string("prompt", None, "One prompt.")
  flags.DEFINE_string("input", None, "jsonl of {\"prompt\": ...} or {\"messages\": [...]}.")
  flags.DEFINE_string("output", None, "Output jsonl, one line per prompt.", required=True)
  flags.DEFINE_integer("max_new_tokens", 128, "Tokens to generate at most per prompt.")
  flags.DEFINE_float("temperature", 0.0, "0 = greedy.")
  flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens (0 = all).")
  flags.DEFINE_float("top_p", 1.0, "Sample from the smallest set with this much mass.")
  flags.DEFINE_integer("seed", 0, "Sampling seed.")
  flags.DEFINE_integer("batch_size", 8, "Prompts generated together.")
  flags.DEFINE_bool("chat_template", True, "Apply the model's chat template when it has one.")
  flags.DEFINE_list("metrics", [], "Score the generations against each input line's "
                    "\"reference\": any of bleu, chrf, rougeL.")


def read_prompts(path: str) -> list[tuple[str, dict]]:
  """(where, record) per input line; a bad line is a DataError naming file and line."""
  out = []
  try:
    f = open(path, encoding="utf-8")
  except OSError as e:
    raise DataError(f"{path}: cannot open ({e.strerror})") from None
  with f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      where = f"{path}:{n}"
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


def _references(records: list[tuple[str, dict]]) -> list[str]:
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


def generate_records(lm, records: list[tuple[str, dict]], sampling: decoding.SamplingConfig,
                     batch_size: int, use_template: bool = True) -> list[dict]:
  stop = lm.stop_ids()
  out = []
  for start in range(0, len(records), batch_size):
    chunk = records[start:start + batch_size]
    ids = []
    for where, rec in chunk:
      try:
        ids.append(prompt_ids(lm.tokenizer, rec, use_template))
      except DataError as e:
        raise DataError(f"{where}: {e}") from None
    # A short last chunk is filled with copies of its first prompt: same batch shape,
    # so no second compile; zip below drops the copies' outputs.
    fill = batch_size - len(ids) if len(records) > batch_size else 0
    gens = decoding.generate(lm.graphdef, lm.params, lm.init_cache, ids + [ids[0]] * fill,
                             pad_id=lm.tokenizer.pad_id, stop_ids=stop, sampling=sampling,
                             max_context=lm.max_context,
                             where=[w for w, _ in chunk] + [chunk[0][0]] * fill)
    for (_, rec), g in zip(chunk, gens):
      stopped = bool(g) and g[-1] in stop
      text = lm.tokenizer.decode(g[:-1] if stopped else g, skip_special_tokens=True)
      key = "messages" if "messages" in rec else "prompt"
      out.append({key: rec[key], "text": text, "new_tokens": len(g), "stopped": stopped})
  return out


@exit_on_user_error
def main(argv):
  cli.begin(argv)
  f = flags.FLAGS
  if bool(f.model) == bool(f.run):
    raise FjftError("pass exactly one of --model (a pretrained decoder) or --run (a run dir)")
  if bool(f.prompt) == bool(f.input):
    raise FjftError("pass exactly one of --prompt or --input")
  from fjft.models import pretrained as lm_lib
  started = time.time()
  if f.adapter and not f.model:
    raise FjftError("--adapter goes with --model (the base model it was trained on)")
  lm = lm_lib.load_run(f.run) if f.run else lm_lib.load_lm(f.model, adapter=f.adapter)
  records = ([("--prompt", {"prompt": f.prompt})] if f.prompt else read_prompts(f.input))
  sampling = decoding.SamplingConfig(max_new_tokens=f.max_new_tokens, temperature=f.temperature,
                                     top_k=f.top_k, top_p=f.top_p, seed=f.seed)
  references = _references(records) if f.metrics else None
  results = generate_records(lm, records, sampling, f.batch_size, f.chat_template)
  with open(f.output, "w", encoding="utf-8") as out:
    for r in results:
      out.write(json.dumps(r, ensure_ascii=False) + "\n")
  if references is not None:
    from fjft.tasks.lm import metrics as gen_metrics
    try:
      scores = gen_metrics.score(f.metrics, [r["text"].strip() for r in results], references)
    except ValueError as e:
      raise FjftError(f"--metrics: {e}") from None
    with open(f.output + ".metrics.json", "w") as out:
      json.dump(dict(scores, examples=len(references), source=lm.source), out, indent=2)
    print(" ".join(f"{k}={v:.2f}" for k, v in scores.items()) + f" ({len(references)} examples)")
  if f.prompt:
    print(results[0]["text"])
  print(f"wrote {len(results)} generations to {f.output} ({lm.source}, "
        f"{time.time() - started:.1f} s)", file=sys.stderr)
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
