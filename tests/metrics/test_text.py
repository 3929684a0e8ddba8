"""Generation metrics on hand-checked cases; ROUGE-L against rouge-score itself."""

import random

import pytest
from rouge_score import rouge_scorer

from fjft.metrics import text as gen_metrics


def test_rouge_l_hand_checked():
  # LCS of "the cat sat on the mat" / "the cat is on the mat": the cat on the mat = 5
  assert gen_metrics.rouge_l("the cat sat on the mat", "The cat is on the mat.") == pytest.approx(5 / 6)
  # hypothesis 3 words, reference 6, LCS 2 ("police", "gunman"): P 2/3, R 2/6 -> F 4/9
  assert gen_metrics.rouge_l("police killed gunman", "police kill the gunman in town") == \
      pytest.approx(2 * (2 / 3) * (2 / 6) / (2 / 3 + 2 / 6))
  assert gen_metrics.rouge_l("", "anything") == 0.0
  assert gen_metrics.rouge_l("no overlap here", "completely different words") == 0.0


def test_rouge_l_is_rouge_score_on_ascii():
  # on ASCII text fjft's words are rouge-score's default tokens, so the scores are its own
  reference = rouge_scorer.RougeScorer(["rougeL"])
  rng = random.Random(0)
  words = ["The", "cat", "sat", "on", "the", "mat.", "It's", "x-ray", "42", "a_b", "(dog)",
           "MAT", "", "--", "3.5"]
  for _ in range(300):
    h = " ".join(rng.choices(words, k=rng.randint(0, 12)))
    r = " ".join(rng.choices(words, k=rng.randint(0, 12)))
    assert gen_metrics.WordTokenizer().tokenize(h) == reference._tokenizer.tokenize(h)
    assert gen_metrics.rouge_l(h, r) == pytest.approx(reference.score(r, h)["rougeL"].fmeasure)


def test_rouge_l_keeps_words_of_every_script():
  default = rouge_scorer.RougeScorer(["rougeL"])
  ours = rouge_scorer.RougeScorer(["rougeL"], tokenizer=gen_metrics.WordTokenizer())
  cases = [
      # hypothesis, reference, fjft's F by hand (LCS of whole words)
      ("¿Dónde está la estación?", "Dónde está la estación de tren", 2 * 4 / (4 + 6)),
      ("Где вокзал?", "Где находится вокзал?", 2 * 2 / (2 + 3)),
      ("Ναι, ευχαριστώ", "ναι ευχαριστώ πολύ", 2 * 2 / (2 + 3)),
      ("un café naïf", "un cafe naif", 2 * 1 / (3 + 3)),   # accents are different letters
  ]
  for h, r, expected in cases:
    assert gen_metrics.rouge_l(h, r) == pytest.approx(expected)
    assert gen_metrics.rouge_l(h, r) == pytest.approx(ours.score(r, h)["rougeL"].fmeasure)
  # rouge-score's own tokens: Cyrillic and Greek vanish (0), and accented words split at
  # the accent ("estaci" + "n"), so "estación" would match "estacin"
  assert default.score("Где находится вокзал?", "Где вокзал?")["rougeL"].fmeasure == 0
  assert default.score("ναι ευχαριστώ πολύ", "Ναι, ευχαριστώ")["rougeL"].fmeasure == 0
  assert default.score("estaci n", "estación")["rougeL"].fmeasure == 1.0
  assert gen_metrics.rouge_l("estación", "estaci n") == 0.0
  assert gen_metrics.score(["rougeL"], ["Где вокзал?"], ["Где находится вокзал?"]) == {
      "rougeL": pytest.approx(80.0)}


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
