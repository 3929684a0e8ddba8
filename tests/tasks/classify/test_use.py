"""fjft.predict's part of a classification run: bad inputs end in one error naming them."""

import os

import numpy as np
import pytest

from fjft.config import identity
from fjft.errors import DataError
from fjft.run import opened
from fjft.tasks.classify import use


@pytest.fixture(scope="module")
def run(finished_run):
  config, workdir, _, _ = finished_run
  return opened.open_run(os.path.join(workdir, identity.run_name(config)))


def test_an_empty_input_is_a_data_error_naming_it(run, tmp_path):
  (tmp_path / "in.jsonl").write_text("")
  with pytest.raises(DataError, match=r"in.jsonl: no rows to predict$"):
    use.predict_file(run, str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl"),
                     text_column=None, batch_size=8, label_column=None, label_map=None)
  assert not (tmp_path / "out.jsonl").exists()


def test_a_bad_input_row_names_its_line_and_no_config_field(run, tmp_path):
  # predict has no data.on_bad_row: the message must not send the user to one
  (tmp_path / "in.jsonl").write_text('{"text": "fine"}\n{"text": \n')
  with pytest.raises(DataError, match=r"in.jsonl:2: invalid JSON .*; fix or remove that row") as e:
    use.predict_file(run, str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl"),
                     text_column=None, batch_size=8, label_column=None, label_map=None)
  assert "on_bad_row" not in str(e.value)


def test_a_batch_larger_than_the_texts_allocates_only_the_texts(run):
  texts = ["where is my order", "I want my money back"]
  # 10^9 rows of padding would need gigabytes: the batch is cut to the two texts
  np.testing.assert_allclose(use.predict_texts(run, texts, batch_size=10**9),
                             use.predict_texts(run, texts), rtol=1e-5, atol=1e-6)
