"""Make text from the cloud safe to show in each channel's message format.

Rule descriptions, group names and anything else read from ECS are written by whoever can
edit a security group, so they are treated as hostile: they must not ping a whole chat
(``@all``, ``<!channel>``, ``<@U123>``), forge links or formatting that changes what the
alert appears to say, smuggle control or bidi characters, or grow a message past the
receiver's size limit.
"""

from __future__ import annotations

import re
import unicodedata

ELLIPSIS = "…"

# Bidi overrides/isolates can make "0.0.0.0/0" read as something else; zero-width characters
# hide text from a reader while a renderer may still act on it.
_INVISIBLE = frozenset(
    "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064"
    "\u2066\u2067\u2068\u2069\ufeff\u00ad"
)
_WHITESPACE = re.compile(r"\s+")
# Zero-width space: breaks "@all"/"@here" so no chat service treats it as a mention, while a
# reader still sees the same characters. Only ever inserted by us, after input was cleaned.
_ZWSP = "\u200b"
_MENTION = re.compile(r"@(?=\w)")


def clean(text: object, limit: int = 300) -> str:
    """One line of plain text: no control, format or invisible characters, at most ``limit`` characters."""
    raw = "" if text is None else str(text)
    out: list[str] = []
    for ch in raw:
        if ch in _INVISIBLE:
            continue
        cat = unicodedata.category(ch)
        if cat == "Cc" or cat in ("Zl", "Zp"):
            out.append(" ")  # a newline or tab still separates words
        elif cat in ("Cf", "Cs", "Co", "Cn"):
            continue
        else:
            out.append(ch)
    return truncate(_WHITESPACE.sub(" ", "".join(out)).strip(), limit)


def truncate(text: str, limit: int) -> str:
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + ELLIPSIS


def defuse_mentions(text: str) -> str:
    """``@all`` → ``@\u200ball``: looks the same, notifies nobody."""
    return _MENTION.sub("@" + _ZWSP, text)


def slack_text(text: object, limit: int = 300) -> str:
    """Inline Slack mrkdwn: the three characters Slack requires escaped, and no mention.

    With ``<`` escaped no ``<!channel>``, ``<@U123>`` or ``<url|label>`` can form. Slack has
    no escape for ``*_~``` ``, so emphasis characters become look-alikes that cannot pair.
    """
    s = clean(text, limit)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = s.translate(_SLACK_LOOKALIKE)
    return defuse_mentions(s)


_SLACK_LOOKALIKE = str.maketrans({"*": "∗", "_": "ˍ", "~": "∼", "`": "ˋ"})

# Chat markdown dialects (DingTalk, WeCom) document no escape character, so every character
# that can open markup, a link, an HTML tag, an entity or a mention is swapped for its
# full-width twin: readable, and inert in every renderer.
_MARKDOWN_LOOKALIKE = str.maketrans(
    {
        "\\": "＼",
        "`": "ˋ",
        "*": "＊",
        "_": "＿",
        "~": "～",
        "[": "［",
        "]": "］",
        "(": "（",
        ")": "）",
        "#": "＃",
        "<": "＜",
        ">": "＞",
        "|": "｜",
        "!": "！",
        "&": "＆",
        "@": "＠",
    }
)


def markdown_text(text: object, limit: int = 300) -> str:
    """Inline text for a chat markdown message (DingTalk, WeCom)."""
    # Cloud text never starts a line in our messages, so line-start markers ("-", "1.") stay.
    return clean(text, limit).translate(_MARKDOWN_LOOKALIKE)


def plain_text(text: object, limit: int = 300) -> str:
    """Plain text for receivers that still parse tags for mentions (Lark ``<at>``, WeCom ``<@id>``)."""
    s = clean(text, limit).replace("<", "＜").replace(">", "＞")
    return defuse_mentions(s)
