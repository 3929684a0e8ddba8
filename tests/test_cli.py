"""The shared plumbing of the commands: errors away from the main thread are one line each."""

import types

import pytest

from fjft import cli
from fjft.errors import FjftError


def test_an_ignored_error_with_a_multi_line_message_is_one_short_line(capsys):
  spec = "TensorStore({\n" + "  'driver': 'zarr',\n" * 100 + "})"
  cli._unraisable(types.SimpleNamespace(object="<coroutine read>",
                                        exc_value=Exception(f"error while reading: {spec}")))
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and len(err) < 400, err
  assert err.startswith("warning: ignored in '<coroutine read>': Exception: error while reading")


def test_a_closed_event_loop_after_a_reported_failure_is_not_said(capsys):
  cli._unraisable(types.SimpleNamespace(object=None, exc_value=RuntimeError("Event loop is closed")))
  assert capsys.readouterr().err == ""


def test_an_output_that_is_the_input_is_refused(tmp_path):
  (tmp_path / "in.jsonl").write_text("{}\n")
  cli.check_output(str(tmp_path / "out.jsonl"), input=str(tmp_path / "in.jsonl"))
  cli.check_output(str(tmp_path / "in.jsonl"), input=None)
  with pytest.raises(FjftError, match=r"is the --corpus file: writing it would overwrite"):
    cli.check_output(str(tmp_path / "." / "in.jsonl"), corpus=str(tmp_path / "in.jsonl"))
  assert (tmp_path / "in.jsonl").read_text() == "{}\n"


def test_a_bad_flag_is_one_error_line_and_exit_2(capsys):
  with pytest.raises(SystemExit) as e:
    cli.plain_flags_parser(["prog", "--no_such_flag_anywhere=1"])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "no_such_flag_anywhere" in err and "Traceback" not in err
