"""Tiny random encoders of the families beyond BERT, as HF folders: each built by
transformers from a Config (random weights), saved with save_pretrained, with MiniLM's
WordPiece tokenizer (the families' own tokenizers are not what these tests check)."""

import os
import shutil

import pytest

from tests.conftest import minilm_dir

_SMALL = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
              intermediate_size=64)


def _configs(transformers):
  return {
      # pad_token_id 0: MiniLM's tokenizer pads with 0 (positions start at pad_token_id + 1)
      "xlm-roberta": transformers.XLMRobertaConfig(**_SMALL, max_position_embeddings=130,
                                                   type_vocab_size=1, pad_token_id=0),
      "distilbert": transformers.DistilBertConfig(vocab_size=30522, dim=32, n_layers=2,
                                                  n_heads=2, hidden_dim=64,
                                                  max_position_embeddings=128),
      "electra": transformers.ElectraConfig(**_SMALL, embedding_size=16,
                                            max_position_embeddings=128),
      # DeBERTa-v3's layout: shared q/k for c2p + p2c, log buckets, no absolute positions
      "deberta-v2": transformers.DebertaV2Config(
          **_SMALL, max_position_embeddings=128, relative_attention=True, position_buckets=16,
          norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type="p2c|c2p",
          position_biased_input=False, type_vocab_size=0),
      # local, global; MiniLM's [CLS]/[SEP]/[PAD] ids; a head with biases (norm_bias)
      "modernbert": transformers.ModernBertConfig(
          **_SMALL, max_position_embeddings=128, local_attention=8, global_attn_every_n_layers=2,
          pad_token_id=0, cls_token_id=101, sep_token_id=102, bos_token_id=101,
          eos_token_id=102, norm_bias=True, classifier_bias=True),
  }


FAMILIES = ("xlm-roberta", "distilbert", "electra", "deberta-v2", "modernbert")
# Families whose HF classification head reads a mean-pooled state too: tested that way.
MEAN_POOLED = ("modernbert",)


def tiny_encoder_dir(model_type, out):
  """An HF folder of a tiny random `model_type` encoder, written to `out`."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  src = minilm_dir()
  torch.manual_seed(0)
  model = transformers.AutoModel.from_config(_configs(transformers)[model_type])
  model.save_pretrained(out, safe_serialization=True)
  for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
    shutil.copy(os.path.join(src, name), os.path.join(out, name))
  return str(out)
