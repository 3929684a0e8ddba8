"""fjft.allocator: when the entry points restart under jemalloc, and that they do."""

import ctypes.util
import os
import subprocess
import sys

import pytest

from fjft import allocator

LIB = "libjemalloc.so.2"


def test_preloads_jemalloc_with_page_retention():
  env = allocator.preload_env({"PATH": "/bin", "FJFT_MALLOC": "jemalloc"}, LIB, "linux")
  assert env["LD_PRELOAD"] == LIB
  assert env["MALLOC_CONF"] == allocator.MALLOC_CONF
  assert env["PATH"] == "/bin"
  assert env["FJFT_MALLOC"] == "system"  # the restarted process does not restart again


def test_keeps_what_the_user_set():
  env = allocator.preload_env({"LD_PRELOAD": "libfoo.so", "MALLOC_CONF": "narenas:1",
                               "FJFT_MALLOC": "jemalloc"}, LIB, "linux")
  assert env["LD_PRELOAD"] == f"{LIB} libfoo.so"
  assert env["MALLOC_CONF"] == "narenas:1"


@pytest.mark.parametrize("environ,library,platform", [
    ({}, LIB, "linux"),                                  # not asked for: the default
    ({"FJFT_MALLOC": "system"}, LIB, "linux"),
    ({"FJFT_MALLOC": "jemalloc", "LD_PRELOAD": "/x/libjemalloc.so.2"}, LIB, "linux"),  # already
    ({"FJFT_MALLOC": "jemalloc"}, None, "linux"),        # not installed
    ({"FJFT_MALLOC": "jemalloc"}, LIB, "darwin"),        # LD_PRELOAD is Linux's
])
def test_goes_on_as_is(environ, library, platform):
  assert allocator.preload_env(environ, library, platform) is None


def test_named_library_must_exist(tmp_path):
  assert allocator.find_jemalloc({"FJFT_JEMALLOC": str(tmp_path / "missing.so")}) is None
  lib = tmp_path / "libjemalloc.so.2"
  lib.write_bytes(b"")
  assert allocator.find_jemalloc({"FJFT_JEMALLOC": str(lib)}) == str(lib)


@pytest.mark.skipif(not sys.platform.startswith("linux") or not ctypes.util.find_library("jemalloc"),
                    reason="no jemalloc on this machine")
def test_reexec_runs_the_command_again_under_jemalloc(tmp_path):
  script = tmp_path / "probe.py"
  script.write_text(
      "import sys\n"
      "from fjft import allocator\n"
      "print('start', flush=True)\n"
      "allocator.reexec()\n"
      "maps = open('/proc/self/maps').read()\n"
      "print('jemalloc' in maps, sys.argv[1:])\n")
  env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
  env["FJFT_MALLOC"] = "jemalloc"
  out = subprocess.run([sys.executable, str(script), "--flag=1"], env=env, capture_output=True,
                       text=True, check=True).stdout.split("\n")
  # printed once before the restart and once after it, arguments kept
  assert out[:3] == ["start", "start", "True ['--flag=1']"]
