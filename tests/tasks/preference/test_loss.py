"""Preference losses against TRL's implementations, log-probs against transformers' logits,
and the LoRA reference (adapters off) against the base model itself."""

import types
from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fjft.tasks.preference import loss as pref_loss
from fjft.tasks.preference.task import without_adapters

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)
B, T = 6, 9
# per-token log-probs of chosen and rejected completions, and their masks (lengths vary)
TOKEN_LOGPS = -RNG.uniform(0.05, 3.0, size=(2 * B, T))
MASK = (np.arange(T)[None, :] < RNG.integers(2, T + 1, size=(2 * B, 1))).astype(np.float64)
REF_TOKEN_LOGPS = TOKEN_LOGPS + RNG.normal(0, 0.3, size=(2 * B, T))


def _ours(kind, **kw):
  sums = (TOKEN_LOGPS * MASK).sum(1).reshape(2, B).T
  ref = (REF_TOKEN_LOGPS * MASK).sum(1).reshape(2, B).T
  counts = MASK.sum(1).reshape(2, B).T
  with jax.enable_x64(True):
    losses, rewards = pref_loss.pair_losses(kind, jnp.asarray(sums), jnp.asarray(counts),
                                            jnp.asarray(ref), **kw)
    return np.asarray(losses), np.asarray(rewards)


class _Accelerator:
  device = "cpu"

  @staticmethod
  def gather(x):
    return x

  gather_for_metrics = gather


def _trl_dpo(loss_type, beta):
  """TRL's DPOTrainer._compute_loss on these log-probs (precomputed reference)."""
  dpo = pytest.importorskip("trl.trainer.dpo_trainer")
  t = lambda a: torch.tensor(a, dtype=torch.float64)
  seq = T + 1   # the completion mask is one longer than the shifted log-probs
  completion = torch.cat([torch.zeros(2 * B, 1), t(MASK)], 1)
  outputs = types.SimpleNamespace(
      log_probs=t(TOKEN_LOGPS * MASK), entropy=torch.zeros(2 * B, seq - 1),
      mean_logits=torch.zeros(2 * B, seq - 1), is_top1=torch.zeros(2 * B, seq - 1, dtype=bool))
  ref = t((REF_TOKEN_LOGPS * MASK).sum(1))
  model = lambda **kw: outputs
  model.training = True
  fake = types.SimpleNamespace(
      model=model, accelerator=_Accelerator(), aux_loss_enabled=False, ld_alpha=None,
      precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=[loss_type],
      loss_weights=[1.0], beta=beta, label_smoothing=0.0, use_weighting=False,
      _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, _total_train_tokens=0,
      _tp_size=1)
  inputs = {"input_ids": torch.zeros(2 * B, seq, dtype=torch.long), "completion_mask": completion,
            "attention_mask": torch.ones(2 * B, seq), "ref_chosen_logps": ref[:B],
            "ref_rejected_logps": ref[B:]}
  out = dpo.DPOTrainer._compute_loss(fake, model, inputs, return_outputs=False)
  return float(out[0] if isinstance(out, tuple) else out)


@pytest.mark.parametrize("kind, trl_type, beta", [("dpo", "sigmoid", 0.1), ("dpo", "sigmoid", 0.5),
                                                  ("ipo", "ipo", 0.1), ("ipo", "ipo", 1.0)])
def test_dpo_and_ipo_equal_trl(kind, trl_type, beta):
  losses, _ = _ours(kind, beta=beta)
  assert abs(float(losses.mean()) - _trl_dpo(trl_type, beta)) < 1e-6


def _averaged():
  counts = MASK.sum(1)
  avg = (TOKEN_LOGPS * MASK).sum(1) / counts
  return torch.tensor(avg[:B]), torch.tensor(avg[B:])


@pytest.mark.parametrize("beta, gamma, smoothing", [(2.0, 0.5, 0.0), (2.5, 1.0, 0.1)])
def test_simpo_equals_trl(beta, gamma, smoothing):
  cpo = pytest.importorskip("trl.experimental.cpo.cpo_trainer")
  fake = types.SimpleNamespace(alpha=0.0, loss_type="simpo", beta=beta, simpo_gamma=gamma,
                               label_smoothing=smoothing, accelerator=_Accelerator())
  theirs, chosen_r, rejected_r = cpo.CPOTrainer.cpo_loss(fake, *_averaged())
  losses, rewards = _ours("simpo", beta=beta, simpo_gamma=gamma, label_smoothing=smoothing)
  np.testing.assert_allclose(losses, theirs.numpy(), atol=1e-6, rtol=0)
  np.testing.assert_allclose(rewards, np.stack([chosen_r, rejected_r], 1), atol=1e-6, rtol=0)


def test_orpo_odds_ratio_equals_trl():
  orpo = pytest.importorskip("trl.experimental.orpo.orpo_trainer")
  fake = types.SimpleNamespace(beta=0.1, accelerator=_Accelerator())
  chosen, rejected = _averaged()
  theirs = orpo.ORPOTrainer.odds_ratio_loss(fake, chosen, rejected)[0]
  losses, _ = _ours("orpo", beta=0.1)
  # ORPO = the chosen reply's mean NLL - beta * log-sigmoid(log odds); TRL returns the second
  # term (beta * log-sigmoid) per pair and takes its NLL over the batch's chosen tokens
  np.testing.assert_allclose(-chosen.numpy() - losses, theirs.numpy(), atol=1e-6, rtol=0)


def test_conservative_dpo_is_the_label_smoothed_sigmoid():
  # TRL's sigmoid loss has no label smoothing any more: the closed form of conservative DPO
  sums = (TOKEN_LOGPS * MASK).sum(1).reshape(2, B).T
  ref = (REF_TOKEN_LOGPS * MASK).sum(1).reshape(2, B).T
  x = 0.2 * ((sums[:, 0] - ref[:, 0]) - (sums[:, 1] - ref[:, 1]))
  softplus = lambda v: np.logaddexp(0.0, v)   # -log sigmoid(-v)
  smoothed, _ = _ours("dpo", beta=0.2, label_smoothing=0.1)
  np.testing.assert_allclose(smoothed, 0.9 * softplus(-x) + 0.1 * softplus(x), atol=1e-12)


def _tiny_model(tiny_llama_dir, lora=False):
  from fjft.models import adapters
  from fjft.models.pretrained import load_lm
  lm = load_lm(tiny_llama_dir)
  model = nnx.merge(lm.graphdef, lm.params)
  if lora:
    model = adapters.apply(model, {"method": "lora", "rank": 4, "alpha": 8.0, "dropout": 0.0,
                                   "target": "attn|mlp", "quantize": ""}, 0)
  return model


def _batch():
  ids = RNG.integers(3, 400, size=(4, 12)).astype(np.int32)
  mask = np.zeros_like(ids, bool)
  mask[:, 5:] = True
  mask[1, 9:] = False     # a shorter reply, then padding
  seg = np.ones_like(ids)
  seg[1, 9:] = 0
  return ids, mask, seg


def _logps(model, ids, mask, seg):
  f = model.features(jnp.asarray(ids), jnp.asarray(np.arange(ids.shape[1])[None].repeat(4, 0)),
                     segment_ids=jnp.asarray(seg))
  return pref_loss.sequence_logps(f, jnp.asarray(ids), jnp.asarray(mask))


def test_sequence_logps_equal_transformers(tiny_llama_dir):
  transformers = pytest.importorskip("transformers")
  ids, mask, seg = _batch()
  ours, counts = _logps(_tiny_model(tiny_llama_dir), ids, mask, seg)
  hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
  with torch.no_grad():
    logits = hf(torch.tensor(ids, dtype=torch.long),
                attention_mask=torch.tensor(seg, dtype=torch.long)).logits
  token = torch.log_softmax(logits[:, :-1], -1).gather(
      -1, torch.tensor(ids[:, 1:], dtype=torch.long)[..., None])[..., 0].numpy()
  theirs = (token * mask[:, 1:]).sum(1)
  np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4, rtol=0)
  assert np.asarray(counts).tolist() == mask[:, 1:].sum(1).tolist()


def test_adapters_off_is_the_base_model_bit_for_bit(tiny_llama_dir):
  ids, mask, seg = _batch()
  base = _logps(_tiny_model(tiny_llama_dir), ids, mask, seg)[0]
  adapted = _tiny_model(tiny_llama_dir, lora=True)
  graphdef, params = nnx.split(adapted)
  # trained adapters: B no longer zero, so the adapted model differs from its base
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 0.05 if any(getattr(k, "key", None) == "lora_b" for k in p) else x, params)
  moved = _logps(nnx.merge(graphdef, params), ids, mask, seg)[0]
  assert float(jnp.abs(moved - base).max()) > 1e-3
  off = _logps(nnx.merge(graphdef, without_adapters(params)), ids, mask, seg)[0]
  assert np.array_equal(np.asarray(off), np.asarray(base))
