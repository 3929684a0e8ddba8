"""Metrics of generated text against references: BLEU and chrF (sacrebleu), ROUGE-L
(rouge-score).

All on a 0-100 scale. BLEU and chrF are sacrebleu's corpus scores with its default
tokenisation, the numbers translation papers report. ROUGE-L is the mean over examples of
rouge-score's rougeL F-measure (the longest common subsequence of word tokens, no
stemming), with one change: the words.

rouge-score's default tokeniser keeps only the runs of [a-z0-9] of the lowercased text, so
"estación" becomes "estaci" + "n", "naïve" "na" + "ve", and Cyrillic, Greek or Chinese text
no tokens at all (a score of 0 whatever the reply). fjft hands it a tokeniser that keeps
the runs of Unicode letters and digits of the lowercased text instead ([^\\W_]+): on ASCII
text the two give the same tokens, so the scores are rouge-score's own; elsewhere every
script's words count. A script written without spaces (Chinese, Japanese) still makes one
token of each run of characters; chrF is the metric for those.
"""

from __future__ import annotations

import re

METRICS = ("bleu", "chrf", "rougeL")
_WORD = re.compile(r"[^\W_]+")   # Unicode letters and digits; "_" separates, as in rouge-score


class WordTokenizer:
  """rouge-score's tokenizer hook: the lowercased runs of Unicode letters and digits."""

  def tokenize(self, text: str) -> list[str]:
    return _WORD.findall(text.lower())


_scorer = None


def _rouge_scorer():
  global _scorer
  if _scorer is None:
    from rouge_score import rouge_scorer   # here: rouge-score pulls nltk (a second to import)
    _scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=WordTokenizer())
  return _scorer


def score(names, hypotheses: list[str], references: list[str]) -> dict[str, float]:
  if len(hypotheses) != len(references):
    raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
  out = {}
  for name in names:
    if name == "bleu":
      import sacrebleu
      out[name] = float(sacrebleu.corpus_bleu(hypotheses, [references]).score)
    elif name == "chrf":
      import sacrebleu
      out[name] = float(sacrebleu.corpus_chrf(hypotheses, [references]).score)
    elif name == "rougeL":
      out[name] = 100.0 * sum(map(rouge_l, hypotheses, references)) / max(len(references), 1)
    else:
      raise ValueError(f"unknown generation metric {name!r}; known: {', '.join(METRICS)}")
  return out


def rouge_l(hypothesis: str, reference: str) -> float:
  """rouge-score's rougeL F-measure (beta 1) of one reply, 0..1, on fjft's word tokens."""
  return float(_rouge_scorer().score(reference, hypothesis)["rougeL"].fmeasure)
