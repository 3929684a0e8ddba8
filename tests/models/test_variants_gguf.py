"""Qwen3, OLMo 2 and Phi-3 GGUF files (llama.cpp's names, written by tests.models.gguf_files
from tiny random HF models saved by transformers) give the model of the HF folder.

Each file is checked against the HF folder it was converted from: fjft's load of that
folder (config and logits) and transformers' PyTorch model on it (float32 logits, with
left padding). Where transformers' own GGUF loader reads the architecture (qwen3, phi3
without longrope) also against it: the same tensors, logits and greedy generation.
transformers has no olmo2 GGUF loader and drops Phi-3's longrope factor tensors.
"""

import dataclasses
import functools

import numpy as np
import pytest
from flax import nnx

from fjft.errors import CheckpointError
from fjft.models import decoding, llama_variants, phi3, registry
from fjft.weights import gguf_io
from tests.models import gguf_files
from tests.models.test_decoder_parity import VOCAB, _batch, _forward, _max_diff, _torch_logits

torch = pytest.importorskip("torch", reason="GGUF parity needs torch")
transformers = pytest.importorskip("transformers", reason="GGUF parity needs transformers")
pytest.importorskip("gguf")

TOL = 1e-4
_SMALL = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)

# case -> (GGUF architecture, fjft family, tiny HF config, transformers' GGUF loader reads it)
CASES = {
    # transformers' qwen3 GGUF loader ignores attention.key_length and takes Qwen3Config's
    # default head_dim, 128: so 128 here (!= hidden / heads, which fjft must not assume).
    "qwen3": ("qwen3", llama_variants, lambda: transformers.Qwen3Config(
        **_SMALL, num_attention_heads=2, num_key_value_heads=1, head_dim=128), True),
    "olmo2": ("olmo2", llama_variants, lambda: transformers.Olmo2Config(
        **_SMALL, num_attention_heads=4, num_key_value_heads=2), False),
    "phi3": ("phi3", phi3, lambda: transformers.Phi3Config(
        **_SMALL, num_attention_heads=4, num_key_value_heads=2), True),
    # Every sequence is longer than original 2: the long factors and the attention factor
    # apply; RoPE on 3/4 of each head; a sliding window shorter than T; tied head.
    "phi3_longrope": ("phi3", phi3, lambda: transformers.Phi3Config(
        **_SMALL, num_attention_heads=4, num_key_value_heads=2, sliding_window=4,
        partial_rotary_factor=0.75, original_max_position_embeddings=2,
        tie_word_embeddings=True,
        rope_scaling={"rope_type": "longrope", "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.5],
                      "long_factor": [1.5, 2.0, 3.0, 4.5, 6.0, 9.0]}), False),
}


@pytest.fixture(scope="module", params=tuple(CASES))
def case(request, tmp_path_factory):
  """(name, arch, module, HF folder, torch model, GGUF path, fjft cfg, fjft model)."""
  name = request.param
  arch, module, make_config, _ = CASES[name]
  torch.manual_seed(0)
  hf_model = transformers.AutoModelForCausalLM.from_config(
      make_config(), attn_implementation="eager").eval()
  with torch.no_grad():
    for pname, p in hf_model.named_parameters():  # norms about 1, everything else random
      p.copy_(("norm" in pname and pname.endswith("weight")) + 0.2 * torch.randn_like(p))
  folder = tmp_path_factory.mktemp(name)
  hf_model.save_pretrained(folder, safe_serialization=True)
  path = gguf_files.from_hf_folder(folder, folder / f"{name}.gguf", arch)
  ours = gguf_io.read_gguf(path)
  cfg, model = module.from_state_dict(ours.hf_config, ours.tensors, source=str(path))
  return name, arch, module, folder, hf_model, path, cfg, model


def test_registry_loads_the_file_as_its_family(case):
  _, arch, module, _, _, path, cfg, _ = case
  assert arch in registry.gguf_architectures()
  loaded = registry.load(str(path))
  assert (loaded.family, loaded.cfg) == (module, cfg)


def test_gguf_gives_the_hf_folders_config_and_logits(case):
  name, _, module, folder, hf_model, _, cfg, model = case
  folder_cfg, folder_model = module.from_hf(str(folder))
  if name == "phi3_longrope":
    # The file holds the attention factor llama.cpp computed with transformers' formula,
    # which the folder leaves to that default.
    scaling = dict(cfg.rope_scaling)
    assert scaling.pop("attention_factor") == pytest.approx(np.sqrt(1 + np.log(32) / np.log(2)))
    cfg = dataclasses.replace(cfg, rope_scaling=scaling)
  assert cfg == folder_cfg
  ids, mask, positions = _batch()
  logits = _forward(model, ids, mask, positions)
  assert _max_diff(logits, _forward(folder_model, ids, mask, positions), mask) < TOL, name
  assert _max_diff(logits, _torch_logits(hf_model, ids, mask, positions), mask) < TOL, name


@functools.cache
def _transformers_gguf(path):
  return transformers.AutoModelForCausalLM.from_pretrained(
      str(path.parent), gguf_file=path.name, dtype=torch.float32,
      attn_implementation="eager").eval()


# The cases transformers' GGUF loader reads (each test taking `case` runs on these only).
_READ_BY_TRANSFORMERS = pytest.mark.parametrize(
    "case", [name for name in CASES if CASES[name][3]], indirect=True)


@_READ_BY_TRANSFORMERS
def test_gguf_matches_transformers_gguf_loader(case):
  name, _, _, _, _, path, _, model = case
  hf = _transformers_gguf(path)
  ours = gguf_io.read_gguf(path)
  theirs = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
  assert sorted(ours.tensors) == sorted(theirs)
  for tensor, w in ours.tensors.items():
    np.testing.assert_array_equal(w, theirs[tensor], err_msg=tensor)
  ids, mask, positions = _batch()
  diff = _max_diff(_forward(model, ids, mask, positions),
                   _torch_logits(hf, ids, mask, positions), mask)
  assert diff < TOL, (name, diff)


@pytest.mark.slow
@_READ_BY_TRANSFORMERS
def test_greedy_generation_matches_transformers_gguf_loader(case):
  name, _, module, _, _, path, cfg, model = case
  hf = _transformers_gguf(path)
  rng = np.random.default_rng(2)
  prompts = [rng.integers(3, VOCAB, size=n).tolist() for n in (5, 8, 3)]
  graphdef, state = nnx.split(model)
  ours = decoding.generate(graphdef, state, functools.partial(module.init_cache, cfg), prompts,
                           pad_id=0, stop_ids=[2], sampling=decoding.SamplingConfig(
                               max_new_tokens=16), max_context=cfg.max_position_embeddings)
  for prompt, got in zip(prompts, ours):
    with torch.no_grad():
      out = hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt),
                                                                          dtype=torch.long),
                        max_new_tokens=16, do_sample=False, eos_token_id=2, pad_token_id=0)
    assert got == out[0, len(prompt):].tolist(), (name, prompt)
  assert max(map(len, ours)) > 1, name


@pytest.mark.parametrize("case", ["olmo2"], indirect=True)
def test_olmo3_file_is_refused_naming_it(case, tmp_path):
  folder = case[3]
  # llama.cpp writes OLMo 3 as olmo2 with sliding-window layers, which HF's Olmo2 lacks.
  path = gguf_files.from_hf_folder(folder, tmp_path / "olmo3.gguf", "olmo2",
                                   add_sliding_window=4)
  with pytest.raises(CheckpointError, match=r"olmo3\.gguf.*sliding-window"):
    gguf_io.read_gguf(path)
