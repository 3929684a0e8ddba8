"""Metrics of generated text against references: BLEU and chrF (sacrebleu), ROUGE-L.

All on a 0-100 scale. BLEU and chrF are sacrebleu's corpus scores with its default
tokenisation, the numbers translation papers report. ROUGE-L is the mean over examples of
the F-measure of the longest common subsequence of lowercased word tokens (no stemming).
"""

from __future__ import annotations

import re

METRICS = ("bleu", "chrf", "rougeL")
_WORD = re.compile(r"\w+", re.UNICODE)


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
  """F-measure (beta 1) of the LCS of word tokens, 0..1."""
  h, r = _WORD.findall(hypothesis.lower()), _WORD.findall(reference.lower())
  if not h or not r:
    return 0.0
  lcs = _lcs(h, r)
  if lcs == 0:
    return 0.0
  p, rec = lcs / len(h), lcs / len(r)
  return 2 * p * rec / (p + rec)


def _lcs(a: list[str], b: list[str]) -> int:
  prev = [0] * (len(b) + 1)
  for x in a:
    cur = [0]
    for j, y in enumerate(b):
      cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
    prev = cur
  return prev[-1]
