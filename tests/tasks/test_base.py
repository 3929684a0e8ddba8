"""fjft.tasks.base: the best-evaluation cache keyed by step, and the early metric check."""

import ml_collections
import pytest

from fjft.errors import ConfigError
from fjft.tasks.base import BestByStep, check_metric
from fjft.training import loop


def test_best_by_step_keeps_the_first_best_step_as_the_loop_picks_it():
  best, state, train_cfg = BestByStep("accuracy"), loop.LoopState(), ml_collections.ConfigDict(
      {"metric": "accuracy"})

  class Quiet:
    def scalars(self, *a):
      pass

    def message(self, *a):
      pass

  for step, acc in ((10, 0.5), (20, 0.7), (30, 0.7), (40, 0.6)):   # a tie at 30
    metrics = {"accuracy": acc}
    best.offer(step, metrics, f"embeddings of step {step}")
    loop._record_eval(state, step, metrics, train_cfg, Quiet())
  assert state.best_step == 20
  assert best.at(state.best_step) == "embeddings of step 20"
  assert best.at(30) is None and best.at(40) is None


def test_best_by_step_misses_a_best_step_from_before_a_resume():
  best = BestByStep("perplexity")   # lower is better
  best.offer(60, {"perplexity": 9.0}, "after the resume")
  best.offer(70, {"perplexity": 8.0}, "better")
  assert best.at(70) == "better"
  assert best.at(50) is None        # step 50 (evaluated before the resume) is recomputed
  best.offer(None, {"perplexity": 1.0}, "not a training evaluation")
  assert best.at(70) == "better"


def test_a_metric_the_task_does_not_compute_is_a_config_error_naming_it():
  config = ml_collections.ConfigDict({"train": {"metric": "bleu"}})
  with pytest.raises(ConfigError, match="train.metric='bleu'.*loss, perplexity"):
    check_metric(config, ["loss", "perplexity"])
  check_metric(ml_collections.ConfigDict({"train": {"metric": "loss"}}), ["loss", "perplexity"])
