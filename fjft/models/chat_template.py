"""Chat templates rendered as transformers renders them, and the assistant replies in them.

A model's chat template (Jinja, shipped with its tokenizer) is rendered in the same
sandboxed environment transformers uses (trim_blocks, lstrip_blocks, loop controls,
`raise_exception`, `strftime_now`, a `tojson` that does not escape HTML), with the same
variables: the messages, `add_generation_prompt`, `tools`/`documents` (none) and the
tokenizer's special tokens by role. So the text fjft trains on is the text transformers
(and every server that uses its templates) renders for the same conversation.

Which characters of that text are the assistant's replies:
  - a template with `{% generation %}` blocks marks them itself (transformers'
    `return_assistant_tokens_mask` reads the same blocks);
  - otherwise each reply starts where the template's generation prompt for the
    conversation before it ends (what a served model is given), and runs through its
    content and the end-of-turn token(s) that follow it (`<|im_end|>\n`, `<eot_id>`,
    `<end_of_turn>\n`, `<|end|>\n` + a final EOS): what the model must produce to answer
    and stop. Templates that render earlier turns differently once more turns follow
    (Qwen3 drops the empty <think> block of earlier replies) are handled: each reply is
    found in the whole conversation as rendered, never pieced together from partial
    renderings.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
from typing import Any, Sequence

from fjft.errors import DataError, FjftError

# Private-use characters that bracket a `{% generation %}` block's output while
# rendering; removed from the text afterwards.
_OPEN, _CLOSE = "\ue000", "\ue001"
# How much of a reply's end is searched for in the rendered text (a template may
# rewrite a reply's start, e.g. move a <think> part, but writes its end as given).
_TAIL = 64


def _raise_exception(message: str):
  import jinja2
  raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
  # Jinja's own tojson escapes HTML characters, which chat templates must not.
  return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                    separators=separators, sort_keys=sort_keys)


def _generation_extension():
  from jinja2 import nodes
  from jinja2.ext import Extension

  class Generation(Extension):
    """`{% generation %}...{% endgeneration %}`: the model-written part of a turn."""
    tags = {"generation"}

    def parse(self, parser):
      lineno = next(parser.stream).lineno
      body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
      return nodes.CallBlock(self.call_method("_bracket"), [], [], body).set_lineno(lineno)

    def _bracket(self, caller):
      return _OPEN + caller() + _CLOSE

  return Generation


@functools.lru_cache(maxsize=8)
def compile_template(source: str):
  """The compiled template, or FjftError when it is not valid Jinja."""
  import jinja2
  from jinja2.ext import loopcontrols
  from jinja2.sandbox import ImmutableSandboxedEnvironment
  # Sandboxed: a chat template comes with the model file and is untrusted.
  env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                      extensions=[_generation_extension(), loopcontrols])
  env.filters["tojson"] = _tojson
  env.globals["raise_exception"] = _raise_exception
  env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
  try:
    return env.from_string(source)
  except jinja2.exceptions.TemplateSyntaxError as e:
    raise FjftError(f"the chat template is not valid Jinja (line {e.lineno}): "
                    f"{e.message}") from e


def has_generation_blocks(source: str) -> bool:
  return re.search(r"\{%-?\s*generation\s*-?%\}", source) is not None


def render(source: str, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool,
           special: dict[str, str]) -> tuple[str, list[tuple[int, int]]]:
  """(text, character spans of its `{% generation %}` blocks).

  Raises:
    DataError: the template rejects the conversation (raise_exception), or a message
      holds the private-use characters that mark generation blocks.
  """
  import jinja2
  template = compile_template(source)
  for m in messages:
    for value in m.values():
      if isinstance(value, str) and (_OPEN in value or _CLOSE in value):
        raise DataError("a message holds the private-use characters U+E000/U+E001, which "
                        "fjft reserves while rendering chat templates")
  try:
    marked = template.render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                             tools=None, documents=None, **special)
  except jinja2.exceptions.TemplateError as e:
    raise DataError(f"the chat template rejected the conversation: {e}") from e
  text, spans, start = [], [], None
  at = 0
  for piece in re.split(f"([{_OPEN}{_CLOSE}])", marked):
    if piece == _OPEN:
      start = at
    elif piece == _CLOSE:
      if start is not None:
        spans.append((start, at))
      start = None
    else:
      text.append(piece)
      at += len(piece)
  return "".join(text), spans


def reply_spans(source: str, messages: Sequence[dict[str, Any]], special: dict[str, str],
                end_of_turn: re.Pattern) -> tuple[str, list[tuple[int, int]]]:
  """The whole conversation rendered (no generation prompt) and the character spans of
  its assistant replies, end-of-turn tokens included (see the module docstring).

  Args:
    end_of_turn: matches, at the end of a reply's content, the whitespace and special
      token(s) that close the turn (Tokenizer.end_of_turn_pattern).

  Raises:
    DataError: the template rejects the conversation, or writes an assistant reply so
      differently from the message that it cannot be found.
  """
  text, blocks = render(source, messages, add_generation_prompt=False, special=special)
  if has_generation_blocks(source):
    return text, blocks
  spans, cursor = [], 0
  for i, m in enumerate(messages):
    if m["role"] != "assistant":
      continue
    start = _reply_start(source, messages, i, text, cursor, special)
    end = _reply_end(text, m["content"], start, end_of_turn)
    if end is None:
      raise DataError(f"the chat template does not write assistant message {i} as given "
                      "(its text is not in the rendered conversation), so its tokens cannot "
                      "be located")
    spans.append((start, end))
    cursor = end
  return text, spans


def _reply_start(source, messages, i, text, cursor, special) -> int:
  # Where the generation prompt for the turns before it ends: exactly what a served
  # model is given before it replies.
  if i > 0:
    try:
      prompt, _ = render(source, messages[:i], add_generation_prompt=True, special=special)
    except DataError:
      prompt = None
    if prompt is not None and text.startswith(prompt) and len(prompt) >= cursor:
      return len(prompt)
  head = messages[i]["content"].strip()[:_TAIL]
  found = text.find(head, cursor) if head else -1
  return found if found >= 0 else cursor


def _reply_end(text: str, content: str, start: int, end_of_turn: re.Pattern) -> int | None:
  # The first place after `start` where the reply's end is followed by an end-of-turn
  # token; without any (a template that closes no turn), the reply's first occurrence.
  tail = content.strip()[-_TAIL:]
  first = found = text.find(tail, start)
  while found >= 0:
    close = end_of_turn.match(text, found + len(tail))
    if close is not None:
      return close.end()
    found = text.find(tail, found + 1) if tail else -1
  return None if first < 0 else first + len(tail)


def end_of_turn_pattern(special_tokens: Sequence[str], eos: str | None) -> re.Pattern:
  """Whitespace, one special token, any EOS tokens after it, and whitespace."""
  if not special_tokens:
    return re.compile(r"(?!)")
  names = "|".join(re.escape(t) for t in sorted(set(special_tokens), key=len, reverse=True))
  eos_part = rf"(?:\s*{re.escape(eos)})*" if eos else ""
  return re.compile(rf"\s*(?:{names}){eos_part}\s*")
