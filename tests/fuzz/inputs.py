"""Fuzzing the three loaders through the real CLI entry point (`sgwatch.cli.main`, in process).

Each example mutates one of the demo's files (the config, a baseline file, a snapshot file) with
hostile tokens (deep nesting, huge numbers, anchors and aliases, duplicate keys, tags, NaN,
control characters, path-like region ids, ...) and runs a command on it. What must hold:

- exit 2 with one complete ``sgwatch: error: ...`` stderr line per problem, or a valid report: exit 0, 1 or 3
  with a JSON report on stdout (``report``) or files written (``baseline capture``);
- never an exception out of ``main`` (a traceback);
- never a file written outside the command's output folder.

`make fuzz` runs tests/fuzz/fuzz_inputs.py (time-bounded, seed printed, a table at the end);
tests/test_fuzz_smoke.py runs a few examples of each in the normal suite.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
from hypothesis import strategies as st

import sgwatch

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo"

HOSTILE = (
    "[" * 3000,
    "{a: " * 200,
    "- " * 2000,
    "9" * 5000,
    "-" + "1" * 4400,
    "1e999",
    ".inf",
    ".nan",
    "NaN",
    "Infinity",
    "0x" + "f" * 200,
    "&a [x, x]",
    "*a",
    "*b",
    "<<: {x: 1}",
    "!!python/object/apply:os.system [echo]",
    "!!binary ==",
    "!!timestamp 2027-02-30",
    "!!int nope",
    "!!float x",
    "!!bool maybe",
    "!!set {a}",
    "!!omap [a]",
    "? [a, b]\n: c",
    "%YAML 1.1\n---\n",
    "\n---\n",
    "\n...\n",
    "\x00",
    "\x1b[2J\x1b[3J\x1b[H",
    "\ufeff",
    "\ud7ff\U0001f600",
    "\t",
    "'",
    '"',
    "\\",
    ": ",
    "#",
    "|\n",
    ">\n",
    "~",
    "null",
    "true",
    "-1",
    "65536",
    "2027-02-30",
    "../../escaped",
    "/tmp/sgwatch-fuzz-escaped",
    "..",
    "policy: drop\n",
    "ingress: []\n",
    "region: x\n",
    '"RegionId": "../../escaped", ',
    '"RegionId": "/tmp/sgwatch-fuzz-escaped", ',
    '"SecurityGroupId": "../x", ',
    '"NextToken": "t", ',
    '"Priority": 1e400, ',
    '"Priority": ' + "7" * 5000 + ", ",
    '"Permissions": ' + "[" * 5000,
    "]]]]}}}}",
)

# One edit: at a fraction of the text, insert a token or replace a stretch with it.
edits = st.tuples(
    st.sampled_from(("insert", "replace", "delete")),
    st.floats(0, 1),
    st.integers(0, 40),
    st.one_of(st.sampled_from(HOSTILE), st.text(max_size=12)),
)
# Field edits keep the file well-formed and put a hostile value where a real one was (the first
# occurrence of the key), so the loaders' checks after parsing are reached too.
KEYS = (
    "RegionId",
    "SecurityGroupId",
    "PrefixListId",
    "Priority",
    "PortRange",
    "IpProtocol",
    "SourceCidrIp",
    "NextToken",
    "TotalCount",
    "SecurityGroupType",
    "region",
    "account",
    "id",
    "priority",
    "ports",
    "peer",
    "interval",
    "listen",
    "baseline",
    "state",
    "concurrency",
    "extra_database_ports",
)
VALUES = (
    "../../escaped",
    "/tmp/sgwatch-fuzz-escaped",
    "..",
    "",
    "cn-hangzhou/../..",
    "sg-\x1b[2J",
    "\u0000",
    "[red]x[/red]",
    "`|<!channel>",
    "0.0.0.0/0",
    "::/0",
    "1/65535",
    "-1/-1",
    "99999",
    "true",
    "null",
    "[]",
    "{}",
    "1e999",
    "9" * 400,
)
field_edits = st.tuples(st.just("field"), st.sampled_from(KEYS), st.integers(0, 3), st.sampled_from(VALUES))
mutations = st.lists(st.one_of(edits, field_edits), min_size=1, max_size=4)

REPORT_SCHEMA = json.loads((Path(sgwatch.__file__).parent / "schemas" / "report.schema.json").read_text())


def _set_field(text: str, key: str, quoted: int, value: str) -> str:
    """The first ``"key": v`` (JSON) or ``key: v`` (YAML) gets ``value``, quoted or bare."""
    if text.lstrip().startswith("{"):
        shown = json.dumps(value) if quoted % 2 == 0 else (value or "0")
        return re.sub(rf'"{key}"\s*:\s*("(?:[^"\\]|\\.)*"|[^,}}\]]*)', lambda _: f'"{key}": {shown}', text, count=1)
    shown = json.dumps(value) if quoted % 2 == 0 else value
    return re.sub(rf"(?m)(\b{key}: )[^,}}\n]*", lambda m: m.group(1) + shown, text, count=1)


def mutate(text: str, plan: list[tuple[str, float | str, int, str]]) -> str:
    for op, where, length, token in plan:
        if op == "field":
            text = _set_field(text, str(where), length, token)
            continue
        assert isinstance(where, float)
        at = int(where * len(text))
        if op == "insert":
            text = text[:at] + token + text[at:]
        elif op == "replace":
            text = text[:at] + token + text[at + length :]
        else:
            text = text[:at] + text[at + length :]
    return text


@dataclass
class Tally:
    """What was tried and what held, per target (a run is one command on one mutated file)."""

    tried: Counter[str] = field(default_factory=Counter)
    exits: dict[str, Counter[int]] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)

    def record(self, target: str, code: int, failure: str | None) -> None:
        self.tried[target] += 1
        self.exits.setdefault(target, Counter())[code] += 1
        if failure:
            self.failures.setdefault(target, []).append(failure)

    def table(self) -> str:
        rows = [
            f"{'target':10} {'runs':>6} {'exit 0':>7} {'exit 1':>7} {'exit 2':>7} {'exit 3':>7} {'other':>6} "
            f"{'held':>5}"
        ]
        for target in sorted(self.tried):
            ex = self.exits.get(target, Counter())
            other = sum(n for c, n in ex.items() if c not in (0, 1, 2, 3))
            held = "yes" if not self.failures.get(target) else f"NO ({len(self.failures[target])})"
            rows.append(
                f"{target:10} {self.tried[target]:>6} {ex[0]:>7} {ex[1]:>7} {ex[2]:>7} {ex[3]:>7} {other:>6} {held:>5}"
            )
        rows.append(
            "held = no traceback, exit 2 with one error line per problem or a valid report, no file outside --output"
        )
        for target, fails in sorted(self.failures.items()):
            rows.append(f"first failure of {target}: {fails[0][:2000]}")
        return "\n".join(rows)


def run_main(args: list[str]) -> tuple[int, str, str, str | None]:
    """(exit code, stdout, stderr, traceback or None) of `sgwatch ARGS`, in this process."""
    from sgwatch.cli import main

    out, err = io.StringIO(), io.StringIO()
    code, tb = 0, None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 99)
        except BaseException:
            code, tb = 98, traceback.format_exc()
    return code, out.getvalue(), err.getvalue(), tb


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def check(target: str, work: Path, name: str, text: str, tally: Tally) -> str | None:
    """Write the mutated file into a fresh copy of the demo, run the target's commands, judge."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(DEMO, work / "demo")
    out_dir = work / "out"
    demo = work / "demo"
    if target == "config":
        (demo / "sgwatch.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
        commands = [
            [
                "report",
                "--config",
                str(demo / "sgwatch.yaml"),
                "--snapshot",
                str(demo / "snapshot"),
                "--format",
                "json",
            ],
            ["validate", "--config", str(demo / "sgwatch.yaml")],
        ]
    elif target == "baseline":
        (demo / "baseline" / "default" / "cn-hangzhou.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
        commands = [
            ["report", "--baseline", str(demo / "baseline"), "--snapshot", str(demo / "snapshot"), "--format", "json"]
        ]
    else:
        (demo / "snapshot" / "cn-hangzhou" / name).write_text(text, encoding="utf-8", errors="surrogatepass")
        commands = [
            ["report", "--baseline", str(demo / "baseline"), "--snapshot", str(demo / "snapshot"), "--format", "json"],
            ["baseline", "capture", "--snapshot", str(demo / "snapshot"), "--output", str(out_dir)],
        ]
    escaped = Path("/tmp/sgwatch-fuzz-escaped.yaml")
    for args in commands:
        before = _files(work)
        code, stdout, stderr, tb = run_main(args)
        failure = _judge(args, code, stdout, stderr, tb)
        new = _files(work) - before
        stray = sorted(str(p) for p in new if out_dir not in p.parents)
        if escaped.exists():
            stray.append(str(escaped))
            escaped.unlink()
        if not failure and stray:
            failure = f"files written outside --output: {stray[:3]}"
        tally.record(target, code, failure and f"sgwatch {' '.join(args[:2])} ...: {failure}")
        if failure:
            return failure
    return None


def _judge(args: list[str], code: int, stdout: str, stderr: str, tb: str | None) -> str | None:
    if tb is not None:
        return f"exception out of main:\n{tb}"
    if code == 2:
        lines = stderr.splitlines()
        # One line per problem (a file's errors all at once), each complete on its own.
        if not lines or not all(line.startswith("sgwatch: error: ") for line in lines):
            return f"exit 2 without one error line per problem: {stderr[:500]!r}"
        return None
    if code not in (0, 1, 3):
        return f"exit {code}: {stderr[:500]!r}"
    if args[0] == "report":
        try:
            report = json.loads(stdout)
        except ValueError:
            return f"exit {code} without a JSON report: {stdout[:200]!r}"
        try:
            jsonschema.validate(report, REPORT_SCHEMA)
        except jsonschema.ValidationError as exc:
            return f"exit {code} with something that is not a report ({exc.message[:200]}): {stdout[:200]!r}"
        if (code == 3 and report["complete"]) or (code == 0 and not report["complete"]):
            return f"exit {code} but complete={report['complete']}"
        if code == 1 and not report["findings"]:
            return "exit 1 (drift) without findings"
    return None


def seeds(target: str) -> list[tuple[str, str]]:
    """The valid files (name, text) a target's examples start from; only the text is mutated."""
    if target == "config":
        return [("sgwatch.yaml", (DEMO / "sgwatch.yaml").read_text())]
    if target == "baseline":
        return [("cn-hangzhou.yaml", (DEMO / "baseline" / "default" / "cn-hangzhou.yaml").read_text())]
    return [(f.name, f.read_text()) for f in sorted((DEMO / "snapshot" / "cn-hangzhou").glob("*.json"))]


class Budget:
    """A wall-clock budget shared by the targets; examples past it are counted, not run."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> bool:
        return time.monotonic() < self.deadline
