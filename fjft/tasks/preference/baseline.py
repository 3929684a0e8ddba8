"""What preference tuning is compared with: the starting model's own preference, a TF-IDF
+ logistic-regression preference model trained on the same train pairs, and "the shorter
reply wins" (people's preferences in many data sets lean on length)."""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression


def logprob_preference(logps: np.ndarray) -> dict:
  """The starting model's preference: the reply it gives the higher summed log-prob.
  logps: [N, 2] (chosen, rejected)."""
  return {"accuracy": float(np.mean(logps[:, 0] > logps[:, 1])),
          "margin": float(np.mean(logps[:, 0] - logps[:, 1]))}


def _dialogue(pair, reply: str) -> str:
  return "\n".join([f"{role}: {content}" for role, content in pair.prompt]
                   + [f"assistant: {reply}"])


def text_baselines(texts: dict) -> dict:
  """{"tfidf": {split: {"accuracy"}}, "shorter": {...}} on dev and test.

  The TF-IDF model (word uni- and bigrams, fitted on the train dialogues) scores a pair by
  the chosen-minus-rejected feature difference; its logistic regression (C=1) is trained
  on each train pair both ways round (difference -> 1, its negation -> 0), so that it has
  no side to lean on.
  """
  vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
  train = texts["train"]
  vectorizer.fit([_dialogue(p, r) for p in train for r in (p.chosen, p.rejected)])

  def differences(pairs):
    return (vectorizer.transform([_dialogue(p, p.chosen) for p in pairs])
            - vectorizer.transform([_dialogue(p, p.rejected) for p in pairs]))

  diff = differences(train)
  from scipy import sparse
  model = LogisticRegression(C=1.0, max_iter=1000)
  model.fit(sparse.vstack([diff, -diff]), np.r_[np.ones(len(train)), np.zeros(len(train))])
  out = {"tfidf": {}, "shorter": {}}
  for split in ("dev", "test"):
    pairs = texts[split]
    out["tfidf"][split] = {"accuracy": float(np.mean(model.decision_function(
        differences(pairs)) > 0))}
    out["shorter"][split] = {"accuracy": float(np.mean(
        [len(p.chosen) < len(p.rejected) for p in pairs]))}
  return out
