"""User errors and Ctrl-C end a command in one line, never a traceback."""

import signal
import subprocess
import sys
import time

import pytest

from fjft import errors
from tests.conftest import REPO


def test_ctrl_c_in_a_main_is_one_line_and_exit_130(capsys):
  def main(argv):
    raise KeyboardInterrupt
  with pytest.raises(SystemExit) as e:
    errors.exit_on_user_error(main)([])
  assert e.value.code == errors.INTERRUPTED_EXIT == 130
  assert capsys.readouterr().err == "interrupted\n"


def test_an_error_raised_while_handling_a_ctrl_c_counts_as_one():
  try:
    try:
      raise KeyboardInterrupt
    except KeyboardInterrupt as inner:
      raise ImportError("numpy._core.multiarray failed to import") from inner
  except ImportError as e:
    assert errors._caused_by_interrupt(e)
  assert not errors._caused_by_interrupt(ValueError("x"))


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.2, 1.0, 3.0])
def test_ctrl_c_while_a_command_starts_says_interrupted(tmp_path, after):
  # while Python imports JAX (C extensions), and once fjft's main reads the run
  p = subprocess.Popen([sys.executable, "-m", "fjft.predict", f"--run={tmp_path}",
                        f"--input={tmp_path}/in.jsonl", f"--output={tmp_path}/out.jsonl"],
                       cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  time.sleep(after)
  p.send_signal(signal.SIGINT)
  out, _ = p.communicate(timeout=60)
  assert "Traceback" not in out, out
  if out.startswith("error: --run:"):
    # the command had finished (its error naming the run dir) before the signal came: it
    # exits 2, or by the signal when that lands during the interpreter's exit
    assert p.returncode in (2, -signal.SIGINT), out
  else:
    assert p.returncode == 130 and out.endswith("interrupted\n"), out
