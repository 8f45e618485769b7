"""What is wrong with an input, said once: pydantic errors as lines, and the one URL check.

Every loader (config, environment, baseline, channels, live settings) turns a ValidationError
into lines with :func:`describe`: one complete line per error, all of them at once, so a user
fixes a file in one pass instead of one error per run.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

Loc = tuple[int | str, ...]
# A hostile file can hold a million errors: past this many, one line says how many more there are.
MAX_ERRORS = 50


# A union picked by the input's shape (a list or a mapping) tags its members so: no key the user wrote.
SHAPE_TAG = "shape:"


def _clean(loc: Sequence[int | str]) -> Loc:
    # pydantic names validators it wraps ("function-after[...]"): not a key the user wrote.
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith(("function-", SHAPE_TAG))))


def dotted(loc: Sequence[int | str]) -> str:
    """``accounts.1.name``: the path of an error, as the loaders have always spelt it."""
    return ".".join(str(p) for p in loc) or "(top level)"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def known_keys(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The keys allowed at ``loc`` (the parent of an unknown key), walking the model's fields."""
    models = [model]
    for part in loc:
        if isinstance(part, int):
            continue
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        if fields:
            models = [m for f in fields for m in _models_in(f.annotation)]
        else:  # a union's tag ("slack"): keep the member it names
            tagged = [m for m in models if _tag(m) == part]
            models = tagged or models
        if not models:
            return []
    return sorted({k for m in models for k in m.model_fields})


def _tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    if field is None:
        return None
    args = typing.get_args(field.annotation)
    return str(args[0]) if typing.get_origin(field.annotation) is typing.Literal and args else None


def suggest(word: str, choices: Sequence[str]) -> str | None:
    """The choice ``word`` is probably a misspelling of, or None."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.75)
    return close[0] if close else None


def _message(err: ErrorDetails, allowed: Sequence[str]) -> str:
    if err["type"] == "extra_forbidden":
        key = str(err["loc"][-1]) if err["loc"] else ""
        near = suggest(key, allowed)
        if near:
            return f"unknown key; did you mean {near!r}?"
        return f"unknown key; allowed: {', '.join(allowed)}" if allowed else "unknown key"
    # Never err["input"]: the value may be a secret.
    return err["msg"].removeprefix("Value error, ")


def describe(
    exc: ValidationError | Sequence[ErrorDetails],
    where: str | Callable[[Loc], str],
    lines_of: Callable[[Loc], int | None] | None = None,
    *,
    model: type[BaseModel] | None = None,
    path: Callable[[Loc], str] = dotted,
) -> list[str]:
    """One line per error: ``where[:line]: dotted.path: what is wrong[; what is allowed]``.

    ``where`` names the input (a file, ``SGWATCH_INTERVAL``) or picks it per error location;
    ``lines_of`` finds an error's line in the file; ``model`` lets an unknown key be answered
    with the nearest known one; ``path`` spells a location (a channel list drops union tags).
    """
    errors = exc.errors() if isinstance(exc, ValidationError) else list(exc)
    out: list[str] = []
    for err in errors[:MAX_ERRORS]:
        loc = _clean(err["loc"])
        allowed = known_keys(model, loc[:-1]) if model is not None and err["type"] == "extra_forbidden" else []
        name = where(loc) if callable(where) else where
        line = lines_of(loc) if lines_of is not None else None
        head = f"{name}{f':{line}' if line else ''}: " if name else ""
        out.append(f"{head}{path(loc)}: {_message(err, allowed)}")
    if len(errors) > MAX_ERRORS:
        name = where(()) if callable(where) else where
        out.append(
            f"{name + ': ' if name else ''}{len(errors) - MAX_ERRORS} more error(s) not shown; fix the above first"
        )
    return out


def check_url(url: str) -> SplitResult:
    """``url`` split, if it is an http(s) URL with a host and nothing a request line would choke on.

    The ValueError names no part of the URL: for chat robots the whole URL is the credential,
    and a caller that may show it (redacted) adds it itself.
    """
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ValueError("must be an http(s) URL without spaces or control characters")
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    except ValueError:
        ok = False
    if not ok:
        hint = "; add http:// or https://" if "://" not in url else ""
        raise ValueError(f"must be an http(s) URL such as http://127.0.0.1:8080{hint}")
    return parts


__all__ = ["MAX_ERRORS", "SHAPE_TAG", "Loc", "check_url", "describe", "dotted", "known_keys", "suggest"]
