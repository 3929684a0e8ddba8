"""fjft.export refuses an --out that would overwrite a run's or a model's own files."""

import pytest

from fjft.errors import FjftError
from fjft.export import check_out


def test_out_that_is_the_run_or_another_run_or_the_model_is_refused(tmp_path):
  run = tmp_path / "run"
  (run / "checkpoints").mkdir(parents=True)
  (run / "model.json").write_text("{}")
  (run / "config.json").write_text('{"name": "mine"}')
  with pytest.raises(FjftError, match=r"is the --run folder: the export would overwrite"):
    check_out(str(tmp_path / "." / "run"), str(run), None)
  with pytest.raises(FjftError, match=r"is a run directory \(it holds model.json, checkpoints\)"):
    check_out(str(run), str(tmp_path / "other"), None)
  model = tmp_path / "model"
  model.mkdir()
  with pytest.raises(FjftError, match=r"is the --model folder"):
    check_out(str(model), None, str(model))
  assert (run / "config.json").read_text() == '{"name": "mine"}'
  # a new folder, an earlier export's folder or one inside the run are fine
  check_out(str(tmp_path / "new"), str(run), None)
  (tmp_path / "old_export").mkdir()
  (tmp_path / "old_export" / "config.json").write_text("{}")
  check_out(str(tmp_path / "old_export"), str(run), None)
  check_out(str(run / "export"), str(run), None)
