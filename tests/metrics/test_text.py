"""Generation metrics on hand-checked cases."""

import pytest

from fjft.metrics import text as gen_metrics


def test_rouge_l_hand_checked():
  # LCS of "the cat sat on the mat" / "the cat is on the mat": the cat on the mat = 5
  assert gen_metrics.rouge_l("the cat sat on the mat", "The cat is on the mat.") == pytest.approx(5 / 6)
  # hypothesis 3 words, reference 6, LCS 2 ("police", "gunman"): P 2/3, R 2/6 -> F 4/9
  assert gen_metrics.rouge_l("police killed gunman", "police kill the gunman in town") == \
      pytest.approx(2 * (2 / 3) * (2 / 6) / (2 / 3 + 2 / 6))
  assert gen_metrics.rouge_l("", "anything") == 0.0
  assert gen_metrics.rouge_l("no overlap here", "completely different words") == 0.0


def test_bleu_chrf_and_rouge_scale():
  refs = ["The cat is on the mat.", "There is a cat on the mat."]
  perfect = gen_metrics.score(gen_metrics.METRICS, refs, refs)
  assert perfect == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0),
                     "rougeL": pytest.approx(100.0)}
  partial = gen_metrics.score(["bleu", "chrf"], ["The cat sat on the mat.", "A cat on a mat."], refs)
  assert 0 < partial["bleu"] < 100 and 0 < partial["chrf"] < 100
  # word order matters to BLEU but not to chrF's character n-grams as much
  shuffled = gen_metrics.score(["bleu", "chrf"], ["mat the on is cat The."], refs[:1])
  assert shuffled["bleu"] < 20 < shuffled["chrf"]
  with pytest.raises(ValueError, match="unknown generation metric 'meteor'"):
    gen_metrics.score(["meteor"], ["a"], ["a"])
