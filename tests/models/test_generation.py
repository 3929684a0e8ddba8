"""Generation and decoder export with the packaged SmolLM2 GGUF, against transformers."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fjft.models import decoding
from tests.conftest import REPO

# the packaged SmolLM2-135M throughout, against transformers' own loading of it
pytestmark = pytest.mark.slow

PROMPTS = ["What is the capital of France?",
           "Write a haiku about the sea.",
           "List three prime numbers and explain briefly why each one is prime, please."]


@pytest.fixture(scope="module")
def lm(smollm2_gguf):
  from fjft.models import pretrained as lm_lib
  return lm_lib.load_lm(smollm2_gguf)


def _chat_ids(tokenizer, prompt):
  text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}])
  return tokenizer.encode(text, add_special_tokens=False)


def test_greedy_generation_matches_transformers(lm, hf_smollm2):
  import torch
  model, tok = hf_smollm2
  sampling = decoding.SamplingConfig(max_new_tokens=24)
  ids = [_chat_ids(lm.tokenizer, p) for p in PROMPTS]
  ours = decoding.generate(lm.graphdef, lm.params, lm.init_cache, ids,
                           pad_id=lm.tokenizer.pad_id, stop_ids=lm.stop_ids(),
                           sampling=sampling, max_context=lm.max_context)
  for prompt, p_ids, got in zip(PROMPTS, ids, ours):
    theirs_ids = tok.apply_chat_template([{"role": "user", "content": prompt}],
                                         add_generation_prompt=True, tokenize=True,
                                         return_dict=True)["input_ids"]
    assert p_ids == list(theirs_ids)
    with torch.no_grad():
      out = model.generate(torch.tensor([p_ids]), max_new_tokens=24, do_sample=False)
    assert got == out[0, len(p_ids):].tolist(), prompt


def test_cached_decoding_equals_full_forward(lm):
  import jax.numpy as jnp
  from flax import nnx
  model = nnx.merge(lm.graphdef, lm.params)
  ids = jnp.asarray([_chat_ids(lm.tokenizer, PROMPTS[0])], jnp.int32)
  t = ids.shape[1]
  pos = jnp.arange(t, dtype=jnp.int32)[None]
  full, _ = model(ids, pos)
  cache = lm.init_cache(1, t)
  kv_mask = jnp.ones((1, t), bool)
  pre, cache = model(ids[:, :t - 3], pos[:, :t - 3], kv_mask=kv_mask, cache=cache,
                     cache_index=jnp.zeros((), jnp.int32))
  steps = [pre]
  for i in range(t - 3, t):
    out, cache = model(ids[:, i:i + 1], pos[:, i:i + 1], kv_mask=kv_mask, cache=cache,
                       cache_index=jnp.asarray(i, jnp.int32))
    steps.append(out)
  np.testing.assert_allclose(np.concatenate([np.asarray(s) for s in steps], 1), np.asarray(full),
                             atol=1e-3)


def test_sampling_is_seeded_and_top_k_1_is_greedy(lm):
  ids = [_chat_ids(lm.tokenizer, PROMPTS[1])]
  run = lambda **kw: decoding.generate(
      lm.graphdef, lm.params, lm.init_cache, ids, pad_id=lm.tokenizer.pad_id,
      stop_ids=lm.stop_ids(), sampling=decoding.SamplingConfig(max_new_tokens=12, **kw),
      max_context=lm.max_context)
  a = run(temperature=1.0, top_p=0.9, seed=3)
  assert a == run(temperature=1.0, top_p=0.9, seed=3)
  assert run(temperature=0.7, top_k=1, seed=5) == run()


def test_export_loads_in_transformers_with_the_same_logits(lm, tmp_path):
  import jax.numpy as jnp
  import torch
  import transformers
  from flax import nnx
  from fjft.models.hf_export import export_pretrained
  out = str(tmp_path / "hf")
  export_pretrained(lm.source, out)
  model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
  tok = transformers.AutoTokenizer.from_pretrained(out)
  text = lm.tokenizer.apply_chat_template([{"role": "user", "content": PROMPTS[2]}])
  ids = lm.tokenizer.encode(text, add_special_tokens=False)
  assert tok(text, add_special_tokens=False)["input_ids"] == ids
  ours, _ = nnx.merge(lm.graphdef, lm.params)(jnp.asarray([ids], jnp.int32),
                                             jnp.arange(len(ids), dtype=jnp.int32)[None])
  with torch.no_grad():
    theirs = model(torch.tensor([ids])).logits.numpy()
  assert np.max(np.abs(np.asarray(ours) - theirs)) < 1e-3


def _generate_cli(*args):
  return subprocess.run([sys.executable, "-m", "fjft.generate", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=600)


def test_generate_cli_writes_lines_and_names_bad_input(smollm2_gguf, tmp_path):
  inp = tmp_path / "in.jsonl"
  inp.write_text(json.dumps({"prompt": "Say hi."}) + "\n" +
                 json.dumps({"messages": [{"role": "user", "content": "Name a colour."}]}) + "\n")
  out = tmp_path / "out.jsonl"
  done = _generate_cli(f"--model={smollm2_gguf}", f"--input={inp}", f"--output={out}",
                       "--max_new_tokens=6")
  assert done.returncode == 0, done.stderr
  rows = [json.loads(l) for l in out.read_text().splitlines()]
  assert len(rows) == 2 and all(r["text"] and 0 < r["new_tokens"] <= 6 for r in rows)
  assert "messages" in rows[1]

  bad = tmp_path / "bad.jsonl"
  bad.write_text(json.dumps({"prompt": "fine"}) + "\n{not json\n")
  r = _generate_cli(f"--model={smollm2_gguf}", f"--input={bad}", f"--output={out}")
  assert r.returncode == 2 and f"{bad}:2: not valid JSON" in r.stderr and "Traceback" not in r.stderr

  long = tmp_path / "long.jsonl"
  long.write_text(json.dumps({"prompt": "word " * 9000}) + "\n")
  r = _generate_cli(f"--model={smollm2_gguf}", f"--input={long}", f"--output={out}",
                    "--nochat_template")
  assert r.returncode == 2 and f"{long}:1: prompt of" in r.stderr and "exceeds" in r.stderr


def test_a_prompts_file_with_bad_bytes_names_the_line(tmp_path):
  from fjft.errors import DataError
  from fjft.models.generation import read_prompts
  path = tmp_path / "prompts.jsonl"
  path.write_bytes(b'\xef\xbb\xbf{"prompt": "hi"}\n{"prompt": "caf\xe9"}\n')
  with pytest.raises(DataError, match=r"prompts.jsonl:2: undecodable bytes \(not valid UTF-8: "):
    read_prompts(str(path))
  path.write_bytes(b'\xef\xbb\xbf{"prompt": "hi"}\n')   # a BOM is not a bad byte
  assert read_prompts(str(path)) == [(f"{path}:1", {"prompt": "hi"})]
