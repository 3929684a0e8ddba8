"""The simple baseline a fine-tune must beat: TF-IDF n-grams + logistic regression."""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from fjft.tasks.classify import model as classify


def tfidf_logreg(train_texts, train_labels, eval_sets: dict, num_labels: int, baseline_cfg,
                 seed: int) -> dict:
  """Fits on train, returns {split: {"accuracy", "macro_f1"}} for each non-empty eval set."""
  vec = TfidfVectorizer(ngram_range=(1, baseline_cfg.ngram_max), sublinear_tf=True, min_df=1)
  x = vec.fit_transform(train_texts)
  clf = LogisticRegression(C=baseline_cfg.C, max_iter=2000, random_state=seed)
  clf.fit(x, np.asarray(train_labels))
  out = {}
  for split, (texts, labels) in eval_sets.items():
    if len(texts):
      out[split] = classify.metrics(np.asarray(labels), clf.predict(vec.transform(texts)), num_labels)
  return out
