"""The contrastive loss on cases with a known answer, and the pooling."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from fjft.models import pooling
from fjft.tasks.retrieval import model as retrieval


def _batch(doc_index, relevant, weights):
  return {"doc_index": jnp.asarray(doc_index, jnp.int32),
          "relevant": jnp.asarray(relevant, jnp.int32),
          "weights": jnp.asarray(weights, jnp.float32)}


def test_in_batch_negatives_known_answer():
  # three orthonormal queries, each document equal to its query: the positive scores 1/T,
  # the two in-batch negatives 0, so each query's loss is log(e^(1/T) + 2) - 1/T.
  q = jnp.eye(3)
  t = 0.5
  batch = _batch([0, 1, 2], [[0], [1], [2]], [1, 1, 1])
  loss, weight = retrieval.contrastive_loss(q, q, batch, t, symmetric=False)
  expected = math.log(math.exp(1 / t) + 2) - 1 / t
  assert float(weight) == 3
  assert float(loss) == pytest.approx(3 * expected, rel=1e-5)
  # symmetric: the same by symmetry of this case
  loss_s, _ = retrieval.contrastive_loss(q, q, batch, t, symmetric=True)
  assert float(loss_s) == pytest.approx(3 * expected, rel=1e-5)


def test_other_relevant_documents_and_padding_are_not_negatives():
  q = jnp.eye(3)
  t = 1.0
  # document 1 (query 1's positive) is also relevant to query 0; row 2 is padding
  batch = _batch([0, 1, -1], [[0, 1], [1, -1], [-1, -1]], [1, 1, 0])
  loss, weight = retrieval.contrastive_loss(q, q, batch, t, symmetric=False)
  # query 0 sees only its positive: loss 0; query 1 sees its positive (1) and doc 0 (0)
  assert float(weight) == 2
  assert float(loss) == pytest.approx(math.log(math.e + 1) - 1, rel=1e-5)


def test_hard_negatives_are_grouped_per_query():
  # 2 queries x (positive, hard negative); query 0's hard negative equals query 0 exactly
  q = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
  d = jnp.asarray([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
  batch = _batch([10, 11, 20, 21], [[10], [20]], [1, 1])
  loss, _ = retrieval.contrastive_loss(q, d, batch, 1.0, symmetric=False)
  # query 0: positive 1, hard negative 1, others 0 and 0 -> log(2e + 2) - 1
  # query 1: positive 1, others 0, 0, 0 -> log(e + 3) - 1
  expected = (math.log(2 * math.e + 2) - 1) + (math.log(math.e + 3) - 1)
  assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_mean_and_cls_pooling():
  h = jnp.asarray([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]]])
  mask = jnp.asarray([[1, 1, 0]])
  np.testing.assert_allclose(pooling.pool(h, mask, "mean", False), [[2.0, 2.0]])
  np.testing.assert_allclose(pooling.pool(h, mask, "cls", False), [[1.0, 0.0]])
  np.testing.assert_allclose(pooling.pool(h, mask, "mean", True),
                             [[1 / math.sqrt(2), 1 / math.sqrt(2)]], rtol=1e-6)


def test_pooling_follows_the_sentence_transformers_config(tmp_path):
  from tests.conftest import minilm_dir
  assert retrieval.pooling_of_model(minilm_dir()) == ("mean", True)
  assert retrieval.pooling_of_model(str(tmp_path)) is None


def test_padding_rows_have_finite_gradients():
  import jax

  def loss(h):
    mask = jnp.asarray([[1, 1], [0, 0]])              # the second row is padding
    e = pooling.pool(h, mask, "mean", True)
    batch = _batch([0, -1], [[0], [-1]], [1, 0])
    return retrieval.contrastive_loss(e, e, batch, 0.05, symmetric=True)[0]

  g = jax.grad(loss)(jnp.ones((2, 2, 3)))
  assert np.isfinite(np.asarray(g)).all()
