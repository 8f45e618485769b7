"""Make text from the cloud safe to show in each chat channel's message format.

Rule descriptions, group names and anything else read from ECS are written by whoever can
edit a security group, so they are treated as hostile: they must not ping a whole chat
(``@all``, ``<!channel>``, ``<@U123>``), forge links or formatting that changes what the
alert appears to say, smuggle control or bidi characters, or grow a message past the
receiver's size limit. The character rules (``clean``) and the report formats live in
``sgwatch.render.inert``; this module holds the chat dialects built on them.
"""

from __future__ import annotations

from sgwatch.render.inert import clean, defuse_mentions

__all__ = ["alertmanager_text", "clean", "markdown_text", "plain_text", "slack_text"]


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


def alertmanager_text(text: object, limit: int = 300) -> str:
    """A label or annotation value: Alertmanager's own chat and e-mail templates do not escape it."""
    return defuse_mentions(clean(text, limit).replace("<", "‹").replace(">", "›"))
