"""Causal-LM fine-tuning end to end on a tiny random Llama with SmolLM2's tokenizer."""

import json
import os
import subprocess
import sys

import pytest

from fjft.config import experiment as config_lib
from fjft.run import opened, runner
from fjft.tasks.lm.config import default_config as lm_config
from fjft.errors import DataError
from tests.conftest import REPO


def _chats(path, n):
  topics = ["card", "loan", "refund", "transfer", "pin", "fee"]
  with open(path, "w") as f:
    for i in range(n):
      t = topics[i % len(topics)]
      f.write(json.dumps({"messages": [
          {"role": "user", "content": f"question {i} about my {t}"},
          {"role": "assistant", "content": f"Here is how your {t} works: see the {t} page."}]})
          + "\n")


def _config(model_dir, data_path, **fields):
  c = lm_config()
  c.model.name = model_dir
  c.data.path = str(data_path)
  c.data.format = "chat"
  c.data.max_length = 64
  c.train.steps = 40
  c.train.eval_every = 20
  c.train.batch_size = 4
  c.train.progress = False
  c.optim.lr = 3e-3
  for k, v in fields.items():
    config_lib.set_field(c, k, str(v))
  return c


# A template of the run's own (data.chat_template) in place of the model's: what a user of a
# base model without one writes. The replies' header is not the model's "assistant".
TEMPLATE = ("{%- for m in messages -%}{{ '<|im_start|>' + ('reply' if m.role == 'assistant' "
            "else m.role) + '\n' + m.content + '<|im_end|>\n' }}{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{ '<|im_start|>reply\n' }}{%- endif -%}")


@pytest.fixture(scope="module")
def sft_run(tiny_llama_dir, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("sft")
  data = tmp / "chats.jsonl"
  _chats(data, 120)
  (tmp / "reply.jinja").write_text(TEMPLATE)
  return runner.run(_config(tiny_llama_dir, data, **{"data.chat_template": tmp / "reply.jinja"}),
                    str(tmp / "runs"), say=lambda *_: None)


def test_short_sft_run_lowers_dev_loss(sft_run):
  results = sft_run
  assert results["dev"]["loss"] < 0.8 * results["baseline"]["dev"]["loss"]
  assert results["test"]["perplexity"] < results["baseline"]["test"]["perplexity"]
  run = results["run_dir"]
  for name in ("config.json", "env.json", "results.json", "data_report.json", "model.json"):
    assert os.path.isfile(os.path.join(run, name)), name
  report = json.load(open(os.path.join(run, "data_report.json")))
  assert sum(s["examples"] for s in report["splits"].values()) == 120
  # the run keeps the template it trained with, for generation and export
  assert open(os.path.join(run, "tokenizer", "chat_template.jinja")).read() == TEMPLATE
  assert opened.open_run(run).tokenizer.apply_chat_template(
      [{"role": "user", "content": "hi"}]).endswith("<|im_start|>reply\n")


@pytest.mark.slow
def test_bad_chat_row_names_file_and_line(tiny_llama_dir, tmp_path):
  data = tmp_path / "chats.jsonl"
  _chats(data, 30)
  lines = data.read_text().splitlines()
  lines[4] = json.dumps({"messages": [{"role": "user", "content": "no reply here"}]})
  data.write_text("\n".join(lines) + "\n")
  with pytest.raises(DataError, match=f"{data}:5: the chat has no assistant turn"):
    runner.run(_config(tiny_llama_dir, data), str(tmp_path / "runs"), say=lambda *_: None)
  skipped = runner.run(_config(tiny_llama_dir, data, **{"data.on_bad_row": "skip",
                                                           "train.steps": 2}),
                          str(tmp_path / "runs"), say=lambda *_: None)
  report = json.load(open(os.path.join(skipped["run_dir"], "data_report.json")))
  assert report["splits"]["train"]["skipped"]["counts"] == {"bad chat": 1}


def test_text_holds_out_the_tail_as_dev_then_test(tiny_llama_dir, tmp_path):
  from fjft.tasks.lm import data as lm_splits
  from fjft.models.tokenizer import Tokenizer
  path = tmp_path / "play.txt"
  path.write_text("".join(f"line {i} of the play\n" for i in range(1, 201)))
  c = lm_config().data
  c.path, c.max_length, c.dev_fraction, c.test_fraction = str(path), 32, 0.1, 0.2
  s = lm_splits.load_lm_splits(c, Tokenizer.from_dir(tiny_llama_dir))
  assert s.report["splits"]["test"]["source"] == f"{path}:161..200"
  assert s.report["splits"]["dev"]["source"] == f"{path}:145..160"  # 10% of the 160 left
  tok = Tokenizer.from_dir(tiny_llama_dir)
  text = lambda exs: "".join(tok.decode(e.ids) for e in exs)
  assert "line 144 of" in text(s.train) and "line 145 of" not in text(s.train)
  assert text(s.test).startswith("line 161 of") and "line 200 of the play" in text(s.test)
  assert all(len(e) <= 32 for e in s.train + s.dev + s.test)


def _parallel(prefix, n):
  words = ["gato", "perro", "casa", "libro", "agua", "sol"]
  english = ["cat", "dog", "house", "book", "water", "sun"]
  with open(f"{prefix}.spa", "w") as s, open(f"{prefix}.eng", "w") as e:
    for i in range(n):
      s.write(f"el {words[i % 6]} {i}\n")
      e.write(f"the {english[i % 6]} {i}\n")


@pytest.mark.slow
def test_translation_run_scores_generations_for_model_and_baseline(tiny_llama_dir, tmp_path):
  _parallel(tmp_path / "pairs", 80)
  c = _config(tiny_llama_dir, tmp_path / "pairs", **{
      "data.format": "parallel", "data.source_suffix": ".spa", "data.target_suffix": ".eng",
      "data.prompt_template": "Spanish: {source}\nEnglish:", "data.use_chat_template": "False",
      "eval.generate": 6, "eval.metrics": "bleu,chrf,rougeL", "eval.max_new_tokens": 8,
      "train.steps": 4, "train.eval_every": 4})
  results = runner.run(c, str(tmp_path / "runs"), say=lambda *_: None)
  for part in (results["dev"], results["test"], results["baseline"]["dev"]):
    assert set(part) == {"loss", "perplexity", "bleu", "chrf", "rougeL"}
    assert all(0.0 <= part[m] <= 100.0 for m in ("bleu", "chrf", "rougeL"))
  generations = json.load(open(os.path.join(results["run_dir"], "generations.json")))
  assert len(generations["test"]) == 6
  assert generations["test"][0]["reference"].startswith("the ")
  assert generations["test"][0]["where"].startswith(f"{tmp_path / 'pairs'}.spa:")


def test_parallel_files_must_align(tiny_llama_dir, tmp_path):
  _parallel(tmp_path / "pairs", 20)
  with open(tmp_path / "pairs.eng", "a") as f:
    f.write("one line too many\n")
  c = _config(tiny_llama_dir, tmp_path / "pairs", **{
      "data.format": "parallel", "data.source_suffix": ".spa", "data.target_suffix": ".eng"})
  with pytest.raises(DataError, match=r"pairs.spa has 20 lines but .*pairs.eng has 21"):
    runner.run(c, str(tmp_path / "runs"), say=lambda *_: None)


@pytest.mark.slow
def test_generate_and_export_from_the_run(sft_run, tiny_llama_dir, tmp_path):
  import numpy as np
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  from flax import nnx
  run = sft_run["run_dir"]
  prompts = tmp_path / "prompts.jsonl"
  prompts.write_text(json.dumps({"prompt": "question 7 about my loan",
                                 "reference": "Here is how your loan works"}) + "\n")
  for source in (f"--run={run}", f"--model={tiny_llama_dir}"):
    out = tmp_path / "out.jsonl"
    r = subprocess.run([sys.executable, "-m", "fjft.generate", source, f"--input={prompts}",
                        f"--output={out}", "--max_new_tokens=12", "--metrics=bleu,rougeL"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    line = json.loads(out.read_text().splitlines()[0])
    assert line["new_tokens"] > 0
    scores = json.loads((tmp_path / "out.jsonl.metrics.json").read_text())
    assert scores["examples"] == 1 and 0 <= scores["bleu"] <= 100 and 0 <= scores["rougeL"] <= 100
  prompts.write_text(json.dumps({"prompt": "no reference here"}) + "\n")
  r = subprocess.run([sys.executable, "-m", "fjft.generate", f"--run={run}", f"--input={prompts}",
                      f"--output={out}", "--metrics=bleu"], capture_output=True, text=True, cwd=REPO)
  assert r.returncode != 0 and "Traceback" not in r.stderr
  assert f"{prompts}:1: --metrics needs a \"reference\"" in r.stderr
  # the run loads its best checkpoint, not the pretrained weights it started from
  from fjft.models.pretrained import load_lm
  tuned = opened.open_run(run).params["embed_tokens"]["embedding"][...]
  start = load_lm(tiny_llama_dir).params["embed_tokens"]["embedding"][...]
  assert float(np.abs(np.asarray(tuned) - np.asarray(start)).max()) > 1e-3
  hf_dir = tmp_path / "hf"
  r = subprocess.run([sys.executable, "-m", "fjft.export", f"--run={run}", f"--out={hf_dir}"],
                     capture_output=True, text=True, cwd=REPO)
  assert r.returncode == 0, r.stderr
  # the export's tokenizer renders chats with the run's template, as the run trained on them
  chat = [{"role": "user", "content": "question 7 about my loan"},
          {"role": "assistant", "content": "Here is how your loan works"}]
  hf_tok = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
  assert hf_tok.chat_template == TEMPLATE
  from fjft.data import packing
  assert list(hf_tok.apply_chat_template(chat, tokenize=True)["input_ids"]) == (
      packing.from_chat(opened.open_run(run).tokenizer, chat, "x").ids.tolist())
  hf = transformers.AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
  lm = opened.open_run(run)
  ids = np.array([[1, 17, 301, 4000, 25, 9]], np.int32)
  ours, _ = nnx.merge(lm.graphdef, lm.params)(ids, np.arange(6, dtype=np.int32)[None])
  with torch.no_grad():
    theirs = hf(torch.as_tensor(ids, dtype=torch.long)).logits.numpy()
  np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-3)


def test_bfloat16_optimizer_state_trains_and_resumes(tiny_llama_dir, tmp_path):
  """optim.state_dtype=bfloat16 through the runner: the run learns as the float32 one does,
  and its moments are laid out, checkpointed and restored like float32 ones."""
  data = tmp_path / "chats.jsonl"
  _chats(data, 120)
  fields = {"train.steps": 20, "train.eval_every": 10, "train.checkpoint_every": 10}
  runs = {d: runner.run(_config(tiny_llama_dir, data, **fields, **{"optim.state_dtype": d}),
                        str(tmp_path / "runs"), say=lambda *_: None)
          for d in ("float32", "bfloat16")}
  low, full = runs["bfloat16"], runs["float32"]
  assert low["run_dir"] != full["run_dir"]            # hashed when set
  assert low["dev"]["loss"] < 0.9 * low["baseline"]["dev"]["loss"]
  assert abs(low["dev"]["loss"] - full["dev"]["loss"]) < 0.01 * full["dev"]["loss"]
  # resumed from its step-10 checkpoint (bf16 moments restored into their layout, the
  # rounding's random stream from the restored step count), it ends bit-identical
  import shutil
  run = low["run_dir"]
  os.remove(os.path.join(run, "results.json"))
  shutil.rmtree(os.path.join(run, "checkpoints", "last", "20"))
  said = []
  again = runner.run(_config(tiny_llama_dir, data, **fields, **{"optim.state_dtype": "bfloat16"}),
                     str(tmp_path / "runs"), say=said.append)
  assert any("resuming from the checkpoint at step 10" in str(s) for s in said), said
  assert again["dev"] == low["dev"] and again["test"] == low["test"]
