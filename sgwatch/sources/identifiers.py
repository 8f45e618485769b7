"""What counts as a cloud identifier: the one rule for every name sgwatch turns into a path.

Region ids, account (folder) names and resource ids arrive in text others control: a response
body, a snapshot's file or folder, a config. Snapshot files and baseline files are named after
them, so a value that is not an identifier (``../../x``, ``/etc/x``, a control character) is
refused, never cleaned up: a cleaned name could collide with another one, or hide what was sent.

Region ids are lowercase words joined by hyphens, the first of two letters or more
(``cn-hangzhou``, ``ap-southeast-1``, ``us-east-1``, ``cn-shanghai-finance-1``). Resource ids are
their prefix and letters, digits and hyphens (``sg-bp1fg655nh68xyz9i4bk``, ``pl-…``, ``prl-…``;
``eni-…``, ``i-…`` for who else reads them), as the baseline's own id fields accept them.
"""

from __future__ import annotations

import re
from typing import Final, Literal

Kind = Literal["region", "account", "security group", "prefix list", "port range list", "network interface", "instance"]

_RESOURCE_PREFIX: Final[dict[Kind, str]] = {
    "security group": "sg",
    "prefix list": "pl",
    "port range list": "prl",
    "network interface": "eni",
    "instance": "i",
}
# 128 characters at most: far above any real id, far below a file name's 255 bytes.
PATTERNS: Final[dict[Kind, str]] = {
    "region": r"^[a-z]{2,}(?:-[a-z0-9]+){1,6}$",
    # an account is the name a config gives it (a snapshot folder): a plain path segment
    "account": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    **{kind: rf"^{prefix}-[0-9A-Za-z\-]{{1,120}}$" for kind, prefix in _RESOURCE_PREFIX.items()},
}
_COMPILED: Final = {kind: re.compile(pattern) for kind, pattern in PATTERNS.items()}
_WHAT: Final[dict[Kind, str]] = {
    "region": "a region id (e.g. cn-hangzhou)",
    "account": "an account name (a letter or digit, then letters, digits, '.', '_' or '-'; at most 64)",
    "security group": "a security group id (e.g. sg-bp1fg655nh68xyz9i4bk)",
    "prefix list": "a prefix list id (e.g. pl-bp1a2b3c4d5e6f7g8h)",
    "port range list": "a port range list id (e.g. prl-bp1a2b3c4d5e6f7g8h)",
    "network interface": "a network interface id (e.g. eni-bp1a2b3c4d5e6f7g8h)",
    "instance": "an instance id (e.g. i-bp1a2b3c4d5e6f7g8h)",
}


class IdentifierError(ValueError):
    """A value that is not the identifier it stands for; the message is one line."""


def problem(kind: Kind, value: object) -> str | None:
    """None if ``value`` is a valid ``kind`` identifier; else what is wrong, in one line."""
    # fullmatch on a str only: "$" alone would let a trailing newline through
    if isinstance(value, str) and _COMPILED[kind].fullmatch(value) is not None:
        return None
    return f"{shown(value)} is not {_WHAT[kind]}"


def is_valid(kind: Kind, value: object) -> bool:
    return problem(kind, value) is None


def check(kind: Kind, value: object) -> str:
    """``value`` if it is a valid ``kind`` identifier; else :class:`IdentifierError`."""
    bad = problem(kind, value)
    if bad is not None:
        raise IdentifierError(bad)
    return str(value)  # a str already: problem() checked


def shown(value: object) -> str:
    """A foreign value as an error message may quote it: escaped (no control character), and short."""
    text = repr(value) if isinstance(value, str) else f"{type(value).__name__} {value!r}"
    return text if len(text) <= 80 else text[:77] + "..."
