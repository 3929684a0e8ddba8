"""The shared plumbing of the commands: errors away from the main thread are one line each."""

import types

from fjft import cli


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
