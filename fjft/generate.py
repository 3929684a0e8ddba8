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
from fjft.models.generation import generate_records, read_prompts, references
from fjft.errors import FjftError, exit_on_user_error

if __name__ == "__main__":
  allocator.reexec()  # before anything allocates: see fjft/allocator.py
  flags.DEFINE_string("model", None, "Registered decoder name, .gguf file or HF folder.")
  flags.DEFINE_string("run", None, "A fine-tuned decoder run directory.")
  flags.DEFINE_string("adapter", None, "With --model: a PEFT LoRA adapter folder (fjft's "
                      "export --format=peft, or one trained with peft), merged into the model.")
  flags.DEFINE_string("prompt", None, "One prompt.")
  flags.DEFINE_string("input", None, "jsonl of {\"prompt\": ...} or {\"messages\": [...]}.")
  flags.DEFINE_string("output", None, "Output jsonl, one line per prompt.", required=True)
  flags.DEFINE_integer("max_new_tokens", 128, "Tokens to generate at most per prompt.",
                       lower_bound=1)
  flags.DEFINE_float("temperature", 0.0, "0 = greedy.", lower_bound=0.0)
  flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens (0 = all).",
                       lower_bound=0)
  flags.DEFINE_float("top_p", 1.0, "Sample from the smallest set with this much mass.",
                     lower_bound=0.0, upper_bound=1.0)
  flags.DEFINE_integer("seed", 0, "Sampling seed.", lower_bound=0, upper_bound=2**32 - 1)
  flags.DEFINE_integer("batch_size", 8, "Prompts generated together.", lower_bound=1)
  flags.DEFINE_bool("chat_template", True, "Apply the model's chat template when it has one.")
  flags.DEFINE_list("metrics", [], "Score the generations against each input line's "
                    "\"reference\": any of bleu, chrf, rougeL.")


@exit_on_user_error
def main(argv):
  cli.begin(argv)
  f = flags.FLAGS
  if bool(f.model) == bool(f.run):
    raise FjftError("pass exactly one of --model (a pretrained decoder) or --run (a run dir)")
  if bool(f.prompt) == bool(f.input):
    raise FjftError("pass exactly one of --prompt or --input")
  cli.check_output(f.output, input=f.input)
  from fjft.models import pretrained
  from fjft.run import opened
  started = time.time()
  if f.adapter and not f.model:
    raise FjftError("--adapter goes with --model (the base model it was trained on)")
  # the input is read (and a bad line said) before the model takes seconds to load
  records = ([("--prompt", {"prompt": f.prompt})] if f.prompt else read_prompts(f.input))
  refs = references(records) if f.metrics else None
  lm = (opened.open_run(f.run, "generate") if f.run
        else pretrained.load_lm(f.model, adapter=f.adapter))
  sampling = decoding.SamplingConfig(max_new_tokens=f.max_new_tokens, temperature=f.temperature,
                                     top_k=f.top_k, top_p=f.top_p, seed=f.seed)
  results = generate_records(lm, records, sampling, f.batch_size, f.chat_template)
  with open(f.output, "w", encoding="utf-8") as out:
    for r in results:
      out.write(json.dumps(r, ensure_ascii=False) + "\n")
  if refs is not None:
    from fjft.metrics import text as gen_metrics
    try:
      scores = gen_metrics.score(f.metrics, [r["text"].strip() for r in results], refs)
    except ValueError as e:
      raise FjftError(f"--metrics: {e}") from None
    with open(f.output + ".metrics.json", "w") as out:
      json.dump(dict(scores, examples=len(refs), source=lm.source), out, indent=2)
    print(" ".join(f"{k}={v:.2f}" for k, v in scores.items()) + f" ({len(refs)} examples)")
  if f.prompt:
    print(results[0]["text"])
  print(f"wrote {len(results)} generations to {f.output} ({lm.source}, "
        f"{time.time() - started:.1f} s)", file=sys.stderr)
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)), flags_parser=cli.plain_flags_parser)
