"""LoRA runs end to end: only adapters (and a new head) train, the base stays bit-identical,
predict / generate / export work on the run, and its PEFT export loads in `peft` with
fjft's logits."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from fjft.config import experiment as config_lib
from fjft.config import identity
from fjft.tasks.classify import use
from fjft.run import opened
from fjft.run import runner
from fjft.models.layers import lora
from tests.conftest import REPO
from tests.tasks.lm.test_train_e2e import _chats, _config


def _classify_config(model_dir, **fields):
  overrides = [("model.name", model_dir),
               ("data.path", os.path.join(REPO, "experiments/data/quickstart")),
               ("train.steps", "6"), ("train.batch_size", "8"), ("train.eval_every", "3"),
               ("train.checkpoint_every", "3"), ("train.progress", "false"),
               ("peft.method", "lora"), ("peft.rank", "4"), ("optim.lr", "5e-3")]
  overrides += list(fields.items())
  return config_lib.load_config(os.path.join(REPO, "experiments", "quickstart.py"), overrides)


@pytest.fixture(scope="module")
def lora_classifier(tiny_bert_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("lora_cls"))
  config = _classify_config(tiny_bert_dir)
  results = runner.run(config, workdir, say=lambda s: None)
  return config, results, os.path.join(workdir, identity.run_name(config))


@pytest.mark.slow
def test_only_adapters_and_head_train(lora_classifier, tiny_bert_dir):
  from fjft.models import bert
  _, results, run_dir = lora_classifier
  _, pretrained = bert.from_hf(tiny_bert_dir)
  run = opened.open_run(run_dir, merge=False)
  tuned = nnx.merge(run.graphdef, run.params)
  adapters = lora.adapters(tuned.encoder)
  assert len(adapters) == 4 * 2   # q/k/v, output, intermediate, output in each layer
  n_adapter = sum(a.size + b.size for a, b in adapters.values())
  n_head = tuned.classifier.kernel[...].size + tuned.classifier.bias[...].size
  assert results["params"]["trainable"] == n_adapter + n_head
  assert results["params"]["trainable"] < 0.05 * results["params"]["total"]
  assert any(float(np.abs(np.asarray(b)).max()) > 0 for _, b in adapters.values())
  # every base parameter is exactly the pretrained one
  base = {k: v for k, v in nnx.to_flat_state(nnx.state(tuned.encoder))
          if k[-1] not in lora.ADAPTER_PARAMS}
  for k, v in nnx.to_flat_state(nnx.state(pretrained)):
    assert np.array_equal(np.asarray(base[k].get_value()), np.asarray(v.get_value())), k


@pytest.mark.slow
def test_lora_run_predicts_and_exports_merged_and_peft(lora_classifier, tiny_bert_dir,
                                                       tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  peft = pytest.importorskip("peft")
  _, _, run_dir = lora_classifier
  texts = ["the card arrived broken", "how do I change my pin"]
  run = opened.open_run(run_dir)   # merged on load
  assert not lora.adapters(nnx.merge(run.graphdef, run.params))
  ours = use.logits_texts(run, texts)
  probs = use.predict_texts(run, texts)
  np.testing.assert_allclose(probs, jax.nn.softmax(ours, -1), atol=1e-5)
  for fmt in ("hf", "peft"):
    r = subprocess.run([sys.executable, "-m", "fjft.export", f"--run={run_dir}",
                        f"--out={tmp_path / fmt}", f"--format={fmt}"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
  tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
  enc = tok(texts, return_tensors="pt", padding=True)
  merged = transformers.AutoModelForSequenceClassification.from_pretrained(
      str(tmp_path / "hf"), dtype=torch.float32).eval()
  base = transformers.AutoModelForSequenceClassification.from_pretrained(
      tiny_bert_dir, num_labels=ours.shape[1], dtype=torch.float32)
  adapted = peft.PeftModel.from_pretrained(base, str(tmp_path / "peft")).eval()
  with torch.no_grad():
    for model in (merged, adapted):
      np.testing.assert_allclose(model(**enc).logits.numpy(), ours, atol=1e-3)
  config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
  # "dense" alone would also wrap the pooler, which the run did not adapt: exact names
  assert config["target_modules"].startswith("^(?:bert\\.encoder\\.layer\\.0\\.")
  assert "pooler" not in config["target_modules"]
  assert config["modules_to_save"] == ["classifier"] and config["r"] == 4


@pytest.mark.slow
def test_full_run_has_no_adapter_to_export(tiny_bert_dir, tmp_path):
  config = _classify_config(tiny_bert_dir, **{"peft.method": "", "train.steps": "3"})
  runner.run(config, str(tmp_path), say=lambda s: None)
  run_dir = os.path.join(str(tmp_path), identity.run_name(config))
  r = subprocess.run([sys.executable, "-m", "fjft.export", f"--run={run_dir}",
                      f"--out={tmp_path / 'x'}", "--format=peft"],
                     capture_output=True, text=True, cwd=REPO)
  assert r.returncode != 0 and "Traceback" not in r.stderr
  assert "is a full fine-tuning run, not a LoRA run" in r.stderr


def test_peft_settings_change_the_hash_only_when_on(tiny_bert_dir):
  full = _classify_config(tiny_bert_dir, **{"peft.method": ""})
  d = config_lib.to_dict(full)
  del d["peft"]
  assert identity.config_hash(full) == identity.config_hash(d)   # runs made before peft
  changed = _classify_config(tiny_bert_dir, **{"peft.method": "", "peft.rank": "16"})
  assert identity.config_hash(changed) == identity.config_hash(full)
  assert identity.config_hash(_classify_config(tiny_bert_dir)) != identity.config_hash(full)


@pytest.fixture(scope="module")
def lora_lm(tiny_llama_dir, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("lora_lm")
  data = tmp / "chats.jsonl"
  _chats(data, 120)
  c = _config(tiny_llama_dir, data, **{"peft.method": "lora", "peft.rank": "4",
                                       "peft.dropout": "0.1", "optim.lr": "1e-2",
                                       "train.steps": "30", "train.eval_every": "15"})
  return runner.run(c, str(tmp / "runs"), say=lambda *_: None), data


@pytest.mark.slow
def test_lora_lm_run_learns_generates_and_round_trips_through_peft(lora_lm, tiny_llama_dir,
                                                                   tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  peft = pytest.importorskip("peft")
  from fjft.models.pretrained import load_lm
  results, data = lora_lm
  run = results["run_dir"]
  # a random 32-wide model learns little through rank-4 adapters, but it does learn
  assert results["dev"]["loss"] < results["baseline"]["dev"]["loss"] - 0.3
  assert results["params"]["trainable"] < 0.05 * results["params"]["total"]
  prompts = tmp_path / "prompts.jsonl"
  prompts.write_text(json.dumps({"prompt": "question 7 about my loan"}) + "\n")
  out = tmp_path / "out.jsonl"
  r = subprocess.run([sys.executable, "-m", "fjft.generate", f"--run={run}", f"--input={prompts}",
                      f"--output={out}", "--max_new_tokens=8"], capture_output=True, text=True,
                     cwd=REPO)
  assert r.returncode == 0, r.stderr
  from_run = json.loads(out.read_text())["text"]
  adapter = tmp_path / "adapter"
  r = subprocess.run([sys.executable, "-m", "fjft.export", f"--run={run}", f"--out={adapter}",
                      "--format=peft"], capture_output=True, text=True, cwd=REPO)
  assert r.returncode == 0, r.stderr
  # the base model + the exported adapter generates what the run generates
  r = subprocess.run([sys.executable, "-m", "fjft.generate", f"--model={tiny_llama_dir}",
                      f"--adapter={adapter}", f"--input={prompts}", f"--output={out}",
                      "--max_new_tokens=8"], capture_output=True, text=True, cwd=REPO)
  assert r.returncode == 0, r.stderr
  assert json.loads(out.read_text())["text"] == from_run
  # peft on the transformers model: the logits of fjft's run
  ids = np.array([[1, 17, 301, 4000, 25, 9]], np.int32)
  lm = opened.open_run(run)
  ours, _ = nnx.merge(lm.graphdef, lm.params)(ids, np.arange(6, dtype=np.int32)[None])
  hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
  tuned = peft.PeftModel.from_pretrained(hf, str(adapter)).eval()
  with torch.no_grad():
    theirs = tuned(torch.as_tensor(ids, dtype=torch.long)).logits.numpy()
  np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-3)
  base = load_lm(tiny_llama_dir)
  plain, _ = nnx.merge(base.graphdef, base.params)(ids, np.arange(6, dtype=np.int32)[None])
  assert float(np.abs(np.asarray(plain) - np.asarray(ours)).max()) > 1e-2


@pytest.mark.slow
def test_lora_on_an_int8_base_trains_and_continues_from_a_peft_adapter(lora_lm, tiny_llama_dir,
                                                                       tmp_path):
  results, data = lora_lm
  adapter = tmp_path / "adapter"
  r = subprocess.run([sys.executable, "-m", "fjft.export", f"--run={results['run_dir']}",
                      f"--out={adapter}", "--format=peft"], capture_output=True, text=True,
                     cwd=REPO)
  assert r.returncode == 0, r.stderr
  c = _config(tiny_llama_dir, data, **{"peft.method": "lora", "peft.rank": "4",
                                       "peft.quantize": "int8", "peft.init_from": str(adapter),
                                       "optim.lr": "1e-2", "train.steps": "4",
                                       "train.eval_every": "2"})
  again = runner.run(c, str(tmp_path / "runs"), say=lambda *_: None)
  # it starts where the first run ended (up to int8's error), not from the pretrained model:
  # its "baseline" is the model it starts from
  assert abs(again["baseline"]["dev"]["loss"] - results["dev"]["loss"]) < 0.05
  assert again["baseline"]["dev"]["loss"] < results["baseline"]["dev"]["loss"] - 0.3
  info = json.loads(open(os.path.join(again["run_dir"], "model.json")).read())
  assert info["peft_structure"]["quantize"] == "int8"
  lm = opened.open_run(again["run_dir"], merge=False)
  kernels = [m.kernel.get_value() for _, m in lora.linears(nnx.merge(lm.graphdef, lm.params))
             if m.quantized]
  assert kernels and all(str(k.dtype) == "int8" for k in kernels)


@pytest.mark.slow
def test_lora_search_run_embeds_merged_and_exports_a_feature_extraction_adapter(
    tiny_bert_dir, tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  peft = pytest.importorskip("peft")
  from fjft.tasks.retrieval import embedding
  from tests.tasks.retrieval.test_train_e2e import tiny_config, write_beir
  c = tiny_config(tiny_bert_dir, write_beir(str(tmp_path / "beir")))
  for k, v in (("peft.method", "lora"), ("peft.rank", "4"), ("optim.lr", "1e-2")):
    config_lib.set_field(c, k, v)
  results = runner.run(c, str(tmp_path / "runs"), say=lambda s: None)
  assert results["params"]["trainable"] < 0.05 * results["params"]["total"]
  run_dir = results["run_dir"]
  texts = ["what is known about jet noise", "a study of blade stall"]
  run = opened.open_run(run_dir)
  ours = embedding.embed_texts(run, texts)
  r = subprocess.run([sys.executable, "-m", "fjft.export", f"--run={run_dir}",
                      f"--out={tmp_path / 'adapter'}", "--format=peft"],
                     capture_output=True, text=True, cwd=REPO)
  assert r.returncode == 0, r.stderr
  config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
  assert config["task_type"] == "FEATURE_EXTRACTION" and not config["modules_to_save"]
  tok = transformers.AutoTokenizer.from_pretrained(tiny_bert_dir)
  base = transformers.AutoModel.from_pretrained(tiny_bert_dir, dtype=torch.float32)
  model = peft.PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
  enc = tok(texts, return_tensors="pt", padding=True)
  with torch.no_grad():
    hidden = model(**enc).last_hidden_state
  mask = enc["attention_mask"][..., None].float()
  if run.info["pooling"] == "mean":
    theirs = (hidden * mask).sum(1) / mask.sum(1)
  else:
    theirs = hidden[:, 0]
  if run.info["normalize"]:
    theirs = torch.nn.functional.normalize(theirs, dim=-1)
  theirs = theirs.numpy()
  np.testing.assert_allclose(ours, theirs, atol=1e-3)
