"""fjft.training.checkpoint: how a failed save is said."""


def test_a_full_disk_is_said_in_words_even_when_tensorstore_gives_only_its_code():
  from fjft.training.checkpoint import _why
  long = ValueError("RESOURCE_EXHAUSTED: Error writing \"opt_state/.zarray\" " + "x" * 600
                    + " [os_error_code='28']")
  assert _why(long).startswith("No space left on device: ValueError: RESOURCE_EXHAUSTED")
  assert len(_why(long)) < 450
  assert _why(OSError(28, "No space left on device")) == (
      "OSError: [Errno 28] No space left on device")
  assert not _why(ValueError("os_error_code='280'")).startswith("No space")
