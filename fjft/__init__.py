"""fjft: fine-tune pretrained transformers in JAX/Flax."""

__version__ = "0.1.0"

import sys as _sys

if _sys.argv[:1] == ["-m"]:
  # `python -m fjft.<command>`: Python sets argv[0] to "-m" while it imports the package,
  # before the command's own imports (JAX: seconds) during which a Ctrl-C would otherwise
  # end in a traceback. Importing fjft as a library changes nothing.
  from fjft.errors import say_interrupts_in_one_line as _one_line
  _one_line()
