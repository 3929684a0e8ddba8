"""DeBERTa's relative-position buckets and the DeBERTa / ModernBERT configs against
transformers (the forward parity is tests/models/test_encoder_parity.py's table)."""

import numpy as np
import pytest

from fjft.models import deberta, modernbert

torch = pytest.importorskip("torch", reason="these tests need torch")
transformers = pytest.importorskip("transformers", reason="these tests need transformers")


@pytest.mark.parametrize("t,buckets,max_position", [(1024, 256, 512), (2048, 256, 512),
                                                    (600, 512, 512), (300, 64, 128),
                                                    (100, 8, 64)])
def test_log_buckets_match_transformers(t, buckets, max_position):
  from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position
  ids = np.arange(t)
  rel = ids[:, None] - ids[None, :]
  theirs = make_log_bucket_position(torch.tensor(rel), buckets, max_position).long().numpy()
  assert np.array_equal(deberta.log_bucket_position(rel, buckets, max_position), theirs)


def test_deberta_v3_config_round_trips_through_transformers():
  d = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
           intermediate_size=64, relative_attention=True, position_buckets=256,
           norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type="p2c|c2p",
           position_biased_input=False, max_relative_positions=-1, type_vocab_size=0)
  cfg = deberta.Config.from_hf(transformers.DebertaV2Config(**d).to_dict())
  assert cfg.pos_att_type == ("p2c", "c2p") and cfg.att_span == 256 and cfg.rel_layer_norm
  assert cfg.scale_factor == 3
  again = deberta.Config.from_hf(transformers.DebertaV2Config(**cfg.to_hf()).to_dict())
  assert again == cfg
  with pytest.raises(Exception, match="attention_impl"):
    deberta.Config.from_hf(d, attention_impl="cudnn")


def test_modernbert_legacy_keys_and_transformers_agree():
  legacy = dict(model_type="modernbert", vocab_size=100, hidden_size=32, num_hidden_layers=4,
                num_attention_heads=4, intermediate_size=48, global_attn_every_n_layers=2,
                global_rope_theta=1000.0, local_rope_theta=20.0, local_attention=8)
  cfg = modernbert.Config.from_hf(legacy, hidden_dropout=0.1)
  assert cfg.layer_types == ("full_attention", "sliding_attention") * 2
  assert (cfg.global_rope_theta, cfg.local_rope_theta, cfg.window) == (1000.0, 20.0, 4)
  assert cfg.hidden_dropout == cfg.embedding_dropout == 0.1
  hf = transformers.ModernBertConfig(**{k: v for k, v in cfg.to_hf().items()
                                        if k != "model_type"})
  assert list(hf.layer_types) == list(cfg.layer_types)
  assert hf.rope_parameters["full_attention"]["rope_theta"] == 1000.0
  assert hf.rope_parameters["sliding_attention"]["rope_theta"] == 20.0
  assert modernbert.Config.from_hf(hf.to_dict(), hidden_dropout=0.1) == cfg
