"""Text others control, made inert for a human to read.

Group ids, names, peers, owner accounts, descriptions, API error messages and file contents are
written by whoever can edit a security group or answer in the cloud's name. Before such text
reaches a terminal, a Markdown document or a chat it passes through one function of this module
(or of ``sgwatch.alerting.escape`` for the chat dialects, which build on these):

- ``visible``: the report formats (table, Markdown, stderr lines). A control character (C0, DEL,
  C1 including the 8-bit CSI ``0x9b``), a format character (bidi overrides and isolates,
  zero-width characters, BOM), a line or paragraph separator, a surrogate or an unassigned code
  point is *shown* as its Python escape (``\\x1b``, ``\\u202e``): an operator reading a report
  sees that an id holds an escape sequence instead of a screen that obeys it. Backslashes are
  left alone, so the text ``\\x1b`` typed literally looks the same; the JSON report keeps the
  exact text.
- ``rich_text``: ``visible`` text as a rich ``Text``, which rich never parses for markup
  (``[red]``) or emoji codes (``:skull:``).
- ``markdown_cell``: ``visible`` text for a GitHub-flavoured Markdown table cell or list item: every
  character that can open emphasis, code, a link, HTML, an entity or end a cell is
  backslash-escaped, and mentions cannot form.
- ``xml_text``: ``visible`` text that is a legal XML 1.0 character sequence (for the JUnit
  report; ElementTree escapes the markup characters, but not the characters XML forbids).
- ``clean``: one bounded line for chat messages, where such characters are dropped (a control
  character becomes a space) because a chat message is a pointer to read, not evidence.
"""

from __future__ import annotations

import re
import unicodedata

from rich.text import Text

ELLIPSIS = "…"

# Zero-width space: breaks "@all"/"@here" so no chat or forge treats it as a mention, while a
# reader still sees the same characters. Only ever inserted by us, after input was made inert.
_ZWSP = "\u200b"
_MENTION = re.compile(r"@(?=\w)")
_WHITESPACE = re.compile(r"\s+")
# Everything CommonMark lets a backslash escape that means something inside a table cell or a
# list item; "-", "+", "#", "." and digits matter only at a line start, which cloud text never is.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&!])")


def unsafe(ch: str) -> bool:
    """A character that a terminal or renderer may act on, or that hides or reorders text."""
    cat = unicodedata.category(ch)
    return cat[0] == "C" or cat in ("Zl", "Zp")


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(text: object) -> str:
    """``text`` with every unsafe character shown as its escape; one line, nothing else changed."""
    s = "" if text is None else str(text)
    if s.isprintable():  # the common case, in C: no control, format or separator character
        return s
    return "".join(_escape_char(ch) if unsafe(ch) else ch for ch in s)


def rich_text(text: object) -> Text:
    """``visible`` text for rich: a ``Text`` is printed as it is, never parsed as markup."""
    return Text(visible(text))


# XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].
_XML_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: object) -> str:
    """``visible`` text with nothing XML 1.0 forbids (``visible`` already shows all of it escaped;
    this is the guarantee a parser needs, whatever ``visible`` lets through)."""
    return _XML_FORBIDDEN.sub(lambda m: _escape_char(m.group()), visible(text))


def defuse_mentions(text: str) -> str:
    """``@all`` → ``@\u200ball``: looks the same, notifies nobody."""
    return _MENTION.sub("@" + _ZWSP, text)


def markdown_cell(text: object) -> str:
    """``visible`` text, inert in a GitHub-flavoured Markdown table cell or list item."""
    return defuse_mentions(_MARKDOWN_SPECIAL.sub(r"\\\1", visible(text)))


def truncate(text: str, limit: int) -> str:
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + ELLIPSIS


def clean(text: object, limit: int = 300) -> str:
    """One line of plain text: no control, format or invisible characters, at most ``limit`` characters."""
    raw = "" if text is None else str(text)
    if not raw.isprintable():
        out: list[str] = []
        for ch in raw:
            if not unsafe(ch):
                out.append(ch)
            elif unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
                out.append(" ")  # a newline or tab still separates words
        raw = "".join(out)
    return truncate(_WHITESPACE.sub(" ", raw).strip(), limit)
