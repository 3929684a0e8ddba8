"""More checks on every row of test_decoder_parity.CASES (a file of their own, which
keeps that one under 400 lines): packed rows, greedy generation, LoRA merged.

Each runs on the same tiny random model (the `family` fixture) against transformers:
  * two sequences packed in one row (segment_ids, positions restarting at 0) give the
    logits of each run alone, ours and transformers';
  * greedy generation of 16 tokens (fjft.models.decoding, a left-padded batch) is
    transformers' generate(do_sample=False) on each prompt alone;
  * LoRA adapters on every Linear (random non-zero B) give the same logits unmerged
    and merged into the kernels, and target exactly the family's hf_linear_names.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fjft.models import decoding
from fjft.models.layers import lora
from tests.models import test_decoder_parity as parity
from tests.models.test_decoder_parity import VOCAB, _forward, _torch_logits

torch = pytest.importorskip("torch", reason="parity tests need torch")
transformers = pytest.importorskip("transformers", reason="parity tests need transformers")

# The same module-scoped fixture: one tiny HF model and its fjft twin per CASES row.
family = parity.family
TOL = 1e-4
# Row r packs sequence A (SPLITS[r] tokens) then sequence B (the rest of the row).
SPLITS = (6, 3)
ROW = 10
STOP = 2  # a token id both sides stop at, if either generates it


@functools.cache
def _packed_forward(graphdef):

  @jax.jit
  def forward(state, ids, positions, segment_ids):
    return nnx.merge(graphdef, state)(ids, positions, segment_ids=segment_ids)[0]

  return forward


def _packed_batch():
  rng = np.random.default_rng(1)
  ids = rng.integers(0, VOCAB, size=(len(SPLITS), ROW)).astype(np.int32)
  segments = np.stack([np.where(np.arange(ROW) < a, 1, 2) for a in SPLITS]).astype(np.int32)
  positions = np.stack([np.concatenate([np.arange(a), np.arange(ROW - a)])
                        for a in SPLITS]).astype(np.int32)
  return ids, segments, positions


def test_packed_rows_match_each_sequence_alone(family):
  name, _, _, hf_model, _, model, _, _ = family
  ids, segments, positions = _packed_batch()
  graphdef, state = nnx.split(model)
  packed = np.asarray(_packed_forward(graphdef)(
      state, jnp.asarray(ids), jnp.asarray(positions), jnp.asarray(segments)))
  for r, a in enumerate(SPLITS):
    for lo, hi in ((0, a), (a, ROW)):
      seq = ids[r:r + 1, lo:hi]
      ones = np.ones_like(seq, dtype=bool)
      pos = np.arange(hi - lo, dtype=np.int32)[None]
      alone = _forward(model, seq, ones, pos)[0]
      theirs = _torch_logits(hf_model, seq, ones, pos)[0]
      assert np.abs(packed[r, lo:hi] - alone).max() < 1e-5, (name, r, lo)
      assert np.abs(packed[r, lo:hi] - theirs).max() < TOL, (name, r, lo)


@pytest.mark.slow
def test_greedy_generation_matches_transformers(family):
  name, module, _, hf_model, cfg, model, _, _ = family
  rng = np.random.default_rng(2)
  prompts = [rng.integers(3, VOCAB, size=n).tolist() for n in (5, 8, 3)]
  graphdef, state = nnx.split(model)
  sampling = decoding.SamplingConfig(max_new_tokens=16)
  ours = decoding.generate(graphdef, state, functools.partial(module.init_cache, cfg),
                           prompts, pad_id=0, stop_ids=[STOP], sampling=sampling,
                           max_context=cfg.max_position_embeddings)
  for prompt, got in zip(prompts, ours):
    with torch.no_grad():
      out = hf_model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt),
                                                                                dtype=torch.long),
                              max_new_tokens=16, do_sample=False, eos_token_id=STOP,
                              pad_token_id=0)
    assert got == out[0, len(prompt):].tolist(), (name, prompt)
  assert max(map(len, ours)) > 1, name


def test_lora_merged_equals_unmerged(family):
  name, module, folder, _, cfg, _, _, _ = family
  _, model = module.from_hf(str(folder))
  ids = np.arange(16, dtype=np.int32).reshape(2, 8) * 5 % VOCAB
  mask = np.ones_like(ids, dtype=bool)
  positions = np.tile(np.arange(8, dtype=np.int32), (2, 1))
  base = _forward(model, ids, mask, positions)
  paths = lora.add_lora(model, rank=2, alpha=4.0, dropout=0.0, target=".", seed=0)
  assert set(paths) == set(module.hf_linear_names(cfg)), name
  rng = np.random.default_rng(3)
  for _, m in lora.linears(model):
    b = m.lora_b.get_value()
    m.lora_b.set_value(jnp.asarray(rng.normal(0.0, 0.2, b.shape), jnp.float32))
  adapted = _forward(model, ids, mask, positions)
  merged = _forward(lora.merge(model), ids, mask, positions)
  assert np.abs(adapted - base).max() > 1e-3, name  # the adapters change the model
  assert np.abs(merged - adapted).max() < 1e-4 * max(1.0, np.abs(adapted).max()), name
