"""Bounds on the text sgwatch parses: configs, baselines and snapshot files are hostile input.

Every file is refused before parsing when it is larger than ``limits.max_input_bytes``; YAML and
JSON are parsed by bounded loaders that refuse, with one line naming the file and line:
nesting deeper than a handful of levels more than any valid file needs, numbers longer than any
valid value, YAML anchors and aliases (a few hundred bytes of them expand to gigabytes), and
duplicate mapping keys (the last one would silently win). Nothing here recurses on the input.

The checks cost a C-speed pass over the text; the exact (Python-speed) checks run only when that
pass finds something that might be over a bound.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import yaml
from pydantic import BeforeValidator

from sgwatch.errors import InputError

# Loading a baseline file peaks at about 7.5 KiB of memory per rule (libyaml's node tree, with two
# position marks per scalar, lives next to the values built from it) for ~140 bytes of YAML per
# rule: ~55x the file's size (benchmarks/bench_baseline_memory.py, docs/performance.md). 8 MiB is
# ~60,000 rules in one file and ~475 MiB at the peak: margin under the example overlay's 1 GiB.
DEFAULT_MAX_INPUT_BYTES = 8 * 1024 * 1024
# Valid configs nest about 6 levels and snapshot JSON about 5.
MAX_DEPTH = 64
# Digits of a number: ports, priorities and timeouts need a few; Python refuses >4300 in int().
MAX_NUMBER_CHARS = 64


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


def _too_big(where: object, size: int, limit: int) -> NoReturn:
    raise InputError(
        f"{where}: {_mib(size)} is over the input size limit of {_mib(limit)} "
        "(raise limits.max_input_bytes in the config, or split the file)"
    )


def read_bytes(path: Path, limit: int = DEFAULT_MAX_INPUT_BYTES) -> bytes:
    """The file's bytes, refusing one larger than ``limit`` before reading it. Raises InputError."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                _too_big(path, size, limit)
            data = f.read(size + 1)  # read(n) allocates n bytes: ask for what stat says, not the limit
            if len(data) > size:  # it grew since stat
                data += f.read(limit + 1 - len(data))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        _too_big(path, len(data), limit)
    return data


def read_text(path: Path, limit: int = DEFAULT_MAX_INPUT_BYTES) -> str:
    """The file as UTF-8 text, refusing one larger than ``limit``. Raises InputError (or FileNotFoundError)."""
    data = read_bytes(path, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: cannot read: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _not_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


# An int field that still takes "60" from an environment variable but not ``true`` (which
# pydantic's lax mode would read as 1).
Integer = Annotated[int, BeforeValidator(_not_bool)]
Number = Annotated[float, BeforeValidator(_not_bool)]


# -- JSON ----------------------------------------------------------------------------------------
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_INNERMOST = re.compile(rb"\[\]|\{\}")
_LONG_DIGITS = re.compile(rb"[0-9]{%d,}" % (MAX_NUMBER_CHARS + 1))


def json_depth_exceeds(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text nests deeper than ``limit`` (counting unclosed brackets as nesting).

    Strings are blanked first (their brackets are text), then innermost pairs are removed, one
    level per round: ``limit`` C-speed passes at most, never a recursion.
    """
    brackets = _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", data))
    for _ in range(limit):
        if not brackets:
            return False
        brackets, removed = _INNERMOST.subn(b"", brackets)
        if not removed:  # unbalanced: what is left may all be open at once
            return len(brackets) > limit
    return bool(brackets)


def _refuse_number(where: str, text: str) -> NoReturn:
    raise InputError(f"{where}: a number of {len(text)} characters is longer than any valid value ({MAX_NUMBER_CHARS})")


def load_json(data: bytes, where: str) -> Any:
    """Parse JSON bounded in nesting and number size; NaN and Infinity are refused. Raises InputError."""
    if json_depth_exceeds(data):
        raise InputError(f"{where}: JSON nested deeper than {MAX_DEPTH} levels; no API response is")

    def constant(name: str) -> NoReturn:
        raise InputError(f"{where}: {name} is not a JSON number (no API response holds one)")

    parse_int: Callable[[str], Any] | None = None
    parse_float: Callable[[str], Any] | None = None
    if _LONG_DIGITS.search(data):  # rare (maybe only inside a string): check each number exactly

        def bounded(convert: Callable[[str], Any]) -> Callable[[str], Any]:
            def parse(text: str) -> Any:
                if len(text) > MAX_NUMBER_CHARS:
                    _refuse_number(where, text)
                return convert(text)

            return parse

        parse_int, parse_float = bounded(int), bounded(float)
    try:
        return json.loads(data, parse_int=parse_int, parse_float=parse_float, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: cannot read: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:  # not reached after the depth check; kept so no input can crash a caller
        raise InputError(f"{where}: JSON nested too deep") from None


# -- YAML ----------------------------------------------------------------------------------------
class YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's safe loader, bounded, resolving plain scalars as YAML 1.2 does (what ruamel writes:
    "on", "no" and "12:30" stay text; YAML 1.1 would make them a boolean and a sexagesimal number).

    libyaml itself refuses nesting deeper than 1000 levels without recursing. On top of that this
    loader refuses duplicate keys and numbers longer than MAX_NUMBER_CHARS, and has no ``<<`` merge
    key. Anchors and aliases are refused by :func:`load_yaml` before loading.
    """

    where = "input"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        if len(mapping) != len(node.value):  # cheap on the common path: only a repeat makes them differ
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise InputError(
                        f"{self.where}:{key_node.start_mark.line + 1}: duplicate key {str(key)[:80]!r} "
                        f"(first at line {seen[key]}); remove one"
                    )
                seen[key] = key_node.start_mark.line + 1
        return mapping

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(node.value)
        if len(text) > MAX_NUMBER_CHARS:
            raise InputError(
                f"{self.where}:{node.start_mark.line + 1}: a number of {len(text)} digits is longer than any "
                f"valid value ({MAX_NUMBER_CHARS})"
            )
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        base = {"0o": 8, "0x": 16}.get(digits[:2], 10)  # YAML 1.2: a leading 0 alone is decimal, not octal
        try:
            return sign * int(digits[2:] if base != 10 else digits, base)
        except ValueError:  # an explicit !!int tag on text that is not one
            raise InputError(f"{self.where}:{node.start_mark.line + 1}: {text[:40]!r} is not an integer") from None

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        if len(str(node.value)) > MAX_NUMBER_CHARS:
            raise InputError(
                f"{self.where}:{node.start_mark.line + 1}: a number of {len(str(node.value))} characters is "
                f"longer than any valid value ({MAX_NUMBER_CHARS})"
            )
        value: float = super().construct_yaml_float(node)
        return value

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> dt.date:
        try:
            value: dt.date = super().construct_yaml_timestamp(node)
        except (ValueError, AttributeError):  # February 30th; an explicit !!timestamp on other text
            raise InputError(f"{self.where}:{node.start_mark.line + 1}: {node.value[:40]!r} is not a date") from None
        return value


_YAML_1_1 = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:merge"}
YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML_1_1]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
):
    YamlLoader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))
YamlLoader.add_constructor("tag:yaml.org,2002:int", YamlLoader.construct_yaml_int)
YamlLoader.add_constructor("tag:yaml.org,2002:float", YamlLoader.construct_yaml_float)
YamlLoader.add_constructor("tag:yaml.org,2002:timestamp", YamlLoader.construct_yaml_timestamp)

# An anchor (&a) or alias (*a) starts a token: after a space, a flow indicator or ':' (`"k":*a`).
# Text without such a match has none; with one (maybe "R&D" in a comment), the events decide.
_ANCHOR_HINT = re.compile(r"(?:\A|[\s\[{,:])[&*][^\s\[\]{},]")


def _syntax_error(where: str, exc: yaml.YAMLError) -> InputError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        if "maximum nesting depth" in problem:
            problem = "nested deeper than 1000 levels"
        return InputError(f"{where}{line}: YAML syntax error: {' '.join(problem.split())}")
    if isinstance(exc, yaml.reader.ReaderError):
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return InputError(f"{where}: YAML syntax error: character #x{char:04x} at {exc.position}: {exc.reason}")
    return InputError(f"{where}: YAML syntax error: {' '.join(str(exc).split())}")


def _check_events(text: str, where: str, max_depth: int | None) -> None:
    """Refuse anchors, aliases and (with ``max_depth``) deep nesting, from libyaml's event stream."""
    depth = 0
    for event in yaml.parse(text, Loader=YamlLoader):
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        anchor = getattr(event, "anchor", None)
        if anchor is not None:  # an anchor (&a) or an alias (*a)
            raise InputError(
                f"{where}:{line}: YAML anchors and aliases (&{anchor} / *{anchor}) are not allowed; write the value out"
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if max_depth is not None and depth > max_depth:
                raise InputError(f"{where}:{line}: nested deeper than {max_depth} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _loader(text: str, where: str, max_depth: int | None) -> YamlLoader:
    try:
        if max_depth is not None or _ANCHOR_HINT.search(text):
            _check_events(text, where, max_depth)
    except yaml.YAMLError as exc:
        raise _syntax_error(where, exc) from None
    loader = YamlLoader(text)
    loader.where = where
    return loader


def load_yaml(text: str, where: str, *, max_depth: int | None = None) -> Any:
    """Parse one YAML document, bounded (see the module's docstring). Raises InputError.

    ``max_depth`` also bounds nesting below libyaml's 1000 levels, for data that code walks
    recursively afterwards (the config); it costs a pass over the events, so baselines skip it.
    """
    loader = _loader(text, where, max_depth)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise _syntax_error(where, exc) from None
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        # PyYAML's own constructors, on an explicit tag the text does not fit (`!!bool maybe`, `!!float x`)
        raise InputError(f"{where}: YAML value of an explicit tag cannot be read: {exc!s:.100}") from None
    finally:
        loader.dispose()


def line_of(text: str, where: str, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of a dotted path (a pydantic error's ``loc``) in the YAML text, or None.

    Composes the text again (no values built): less work than the load that found the error.
    """
    loader = _loader(text, where, None)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
            if found is None:
                break
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
