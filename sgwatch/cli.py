"""The ``sgwatch`` command line. Every user error ends as one line on stderr per problem and an exit code:

0 in sync, 1 drift at or above ``--fail-on``, 2 usage/config/baseline/snapshot/credential error,
3 incomplete (something could not be read; what could be assessed is still printed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sgwatch import __version__, baseline, config, desired, logs
from sgwatch.bulk import gc_paused
from sgwatch.core import engine
from sgwatch.core.checks import CATALOGUE, CIS_BENCHMARK, CIS_RECOMMENDATIONS, RANK, SEVERITIES
from sgwatch.core.findings import Report
from sgwatch.core.model import GroupKey, ScanError, Snapshot
from sgwatch.errors import EXIT_DRIFT, EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE, SgwatchError
from sgwatch.events import attribution
from sgwatch.events.model import ChangeEvent
from sgwatch.listen import listen_flag
from sgwatch.render import json as json_render
from sgwatch.render import junit, markdown, sarif, table
from sgwatch.render.inert import visible
from sgwatch.sources import snapshot as snapshot_source
from sgwatch.sources.raw import RawScan


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def exit_code(report: Report, fail_on: str) -> int:
    """1 for drift at or above ``fail_on`` wins over 3 for incomplete: both fail a pipeline."""
    worst = report.worst()
    if fail_on != "none" and worst is not None and RANK[worst] >= RANK[fail_on]:
        return EXIT_DRIFT
    return EXIT_OK if report.complete else EXIT_INCOMPLETE


@dataclasses.dataclass(frozen=True, slots=True)
class RenderContext:
    """What some formats need beyond the report: where the baseline lives, what was scanned."""

    color: bool = False
    baseline: Path | None = None
    groups: tuple[GroupKey, ...] = ()
    fail_on: str = "info"
    to_terminal: bool = True


def _render(report: Report, fmt: str, ctx: RenderContext) -> str:
    if fmt == "json":
        return json_render.render(report)
    if fmt == "markdown":
        return markdown.render(report)
    if fmt == "sarif":
        return sarif.render(report, ctx.baseline)
    if fmt == "junit":
        return junit.render(report, ctx.groups, ctx.fail_on)
    return table.render(report, color=ctx.color, width=terminal_width(ctx.to_terminal))


def terminal_width(to_stdout: bool = True) -> int:
    """COLUMNS; else, for stdout, the width of the terminal it (or, piped into ``less`` or
    ``head``, stderr or stdin) is on; else (a CI log, a file) the table's default."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    for stream in (sys.stdout, sys.stderr, sys.stdin) if to_stdout else ():
        try:
            return os.get_terminal_size(stream.fileno()).columns
        except (AttributeError, ValueError, OSError):  # not a terminal, closed, or no descriptor
            continue
    return table.DEFAULT_WIDTH


_stdout_failed = False


def _silence_stdout() -> None:
    """Point stdout at /dev/null: what could not be written stays in its buffer, and the
    interpreter's last flush at exit would fail on it again (a traceback-like "Exception ignored")."""
    global _stdout_failed
    _stdout_failed = True
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file behind stdout (an in-process test's buffer)
        pass


def _write(text: str, output: Path | None) -> None:
    if output is None:
        try:
            click.echo(text, nl=False)
            sys.stdout.flush()
        except BrokenPipeError:
            raise  # the reader went away (`| head`): not an error, see main()
        except OSError as exc:  # a full disk behind `> file`, /dev/full
            _silence_stdout()
            raise SgwatchError(f"stdout: cannot write: {exc.strerror or exc}") from None
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise SgwatchError(f"{output}: cannot write report: {exc.strerror or exc}") from None


def _echo_unread(what: str, errors: Iterable[ScanError]) -> None:
    for e in errors:
        target = f" {e.security_group_id}" if e.security_group_id else ""
        click.echo(visible(logs.scrub(f"{what}: {e.account} {e.region}{target}: {e.code}: {e.message}")), err=True)


def _load_config(path: Path | None) -> config.Config:
    """The config of every command: loaded, and its secrets handed to the redactor before anything
    can print them (a one-shot command's error line is as public as the daemon's log)."""
    cfg = config.load(path)
    logs.register_secret(*config.secrets(cfg))
    return cfg


def _register_endpoint(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    if value:
        logs.register_secret(*logs.url_userinfo(value))
    return value


def _live_snapshot(regions: tuple[str, ...], endpoint: str | None, cfg: config.Config) -> Snapshot:
    return snapshot_source.parse_scan(_live_scan(regions, endpoint, cfg))


def _live_scan(regions: tuple[str, ...], endpoint: str | None, cfg: config.Config) -> RawScan:
    from sgwatch.sources import live  # the SDK is heavy to import; offline commands never need it

    settings = cfg.live(regions, endpoint)
    if not sys.stderr.isatty():
        return live.scan(settings)
    # A progress bar only on a terminal: piped output and CI logs stay clean.
    with Progress(
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("groups", total=None)
        return live.scan(settings, progress=lambda done, total: bar.update(task, completed=done, total=total))


# LookupEvents for one account and region over [start, end]: the events of that account.
Lookup = Callable[[str, str, datetime, datetime], list[ChangeEvent]]


def actiontrail_lookup(cfg: config.Config, endpoint: str | None) -> Lookup:
    """The ActionTrail LookupEvents client for ``report --actiontrail``: each configured account's
    events read with its own credentials (a discovered account's name is its UID)."""
    from sgwatch.sources.actiontrail import TrailClient

    settings = cfg.live(endpoint=endpoint)
    client = TrailClient(settings)
    accounts = {a.name: a for a in settings.accounts}

    def lookup(account: str, region: str, start: datetime, end: datetime) -> list[ChangeEvent]:
        if account not in accounts:
            raise SgwatchError(f"no configured account is named {account!r}")
        return client.lookup_events(accounts[account], region, start, end).events

    return lookup


def _snapshot_time(folder: Path) -> datetime:
    """When a snapshot was read: its newest file's modification time (a saved snapshot is not rewritten)."""
    times = [p.stat().st_mtime for p in folder.rglob("*.json") if p.is_file()]
    return datetime.fromtimestamp(max(times), UTC) if times else utcnow()


def attribute_from_actiontrail(report: Report, lookup: Lookup, read_at: datetime, now: datetime) -> None:
    """``changed_by`` from the events LookupEvents has for the findings' accounts and regions.

    A lookup that fails leaves that region's findings unattributed (null), said on stderr."""
    span = attribution.actiontrail_window(read_at, now)
    if span is None:
        click.echo("sgwatch: warning: --actiontrail: the state is older than ActionTrail keeps events", err=True)
        return
    events: list[tuple[str, ChangeEvent]] = []
    for account, region in sorted({(f.account, f.region) for f in report.findings}):
        try:
            events += [(account, e) for e in lookup(account, region, *span)]
        except SgwatchError as exc:
            line = f"sgwatch: warning: --actiontrail: {account} {region}: {exc}; its findings are not attributed"
            click.echo(visible(logs.scrub(line)), err=True)
    attribution.attribute_report(report, attribution.query_of(events), at=read_at)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sgwatch")
def cli() -> None:
    """Watch Alibaba Cloud ECS security groups for drift and new internet exposure."""


_config_opt = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    envvar="SGWATCH_CONFIG",
    help="Config YAML (default: none; SGWATCH_CONFIG).",
)
_baseline_opt = click.option(
    "--baseline",
    "baseline_paths",
    type=click.Path(path_type=Path),
    multiple=True,
    help="Baseline YAML file or folder, or a Terraform state; repeat for several (or `baseline:` in the config).",
)
_managed_only_opt = click.option(
    "--managed-only", is_flag=True, default=False, help="With Terraform states: leave out groups no state manages."
)
_region_opt = click.option("--region", "regions", multiple=True, help="Region to scan live (repeatable).")
_endpoint_opt = click.option(
    "--endpoint",
    default=None,
    envvar="SGWATCH_ECS_ENDPOINT",
    callback=_register_endpoint,
    help="ECS API endpoint URL for every region (SGWATCH_ECS_ENDPOINT).",
)


@cli.command()
@_baseline_opt
@_managed_only_opt
@click.option(
    "--snapshot",
    "snapshot_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Offline snapshot folder of API JSON; without it, scan the cloud live.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "markdown", "sarif", "junit"]),
    default="table",
    show_default=True,
    help="table for a terminal, json for tools, markdown for a PR comment, sarif for code scanning, junit for CI.",
)
@click.option("--output", type=click.Path(path_type=Path), default=None, help="Write the report here, not stdout.")
@click.option(
    "--fail-on",
    type=click.Choice([*SEVERITIES, "none"]),
    default="info",
    show_default=True,
    help="Exit 1 when a finding is at or above this severity.",
)
@click.option(
    "--actiontrail",
    is_flag=True,
    help="Name who made each change (changed_by) from ActionTrail LookupEvents (the last 90 days).",
)
@_region_opt
@_endpoint_opt
@_config_opt
def report(
    baseline_paths: tuple[Path, ...],
    managed_only: bool,
    snapshot_dir: Path | None,
    fmt: str,
    output: Path | None,
    fail_on: str,
    actiontrail: bool,
    regions: tuple[str, ...],
    endpoint: str | None,
    config_path: Path | None,
) -> None:
    """Compare the live state (or a snapshot) with the baseline and report drift."""
    cfg = _load_config(config_path)
    if baseline_paths:
        cfg = cfg.model_copy(update={"baseline": list(baseline_paths)})
    if cfg.baseline is None:
        raise click.UsageError("give --baseline PATH (or `baseline:` in the config)")
    path = cfg.baselines()[0].path
    with gc_paused(freeze=True):  # the process ends after the report
        desired_state = desired.from_config(cfg, regions=regions, managed_only=managed_only)
        live = (
            snapshot_source.load(snapshot_dir, cfg.limits.max_input_bytes, cfg.account_uids())
            if snapshot_dir
            else _live_snapshot(regions, endpoint, cfg)
        )
        result = engine.assess(desired_state, live, cfg.checks.to_settings(), utcnow())
    if actiontrail:
        read_at = _snapshot_time(snapshot_dir) if snapshot_dir else result.generated_at
        attribute_from_actiontrail(result, actiontrail_lookup(cfg, endpoint), read_at, utcnow())
    color = output is None and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    ctx = RenderContext(color, path, tuple(live.groups), fail_on, to_terminal=output is None)
    _write(_render(result, fmt, ctx), output)
    sys.exit(exit_code(result, fail_on))


@cli.group(name="baseline")
def baseline_group() -> None:
    """Write and check baseline files."""


@baseline_group.command()
@click.option(
    "--snapshot",
    "snapshot_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Capture from this snapshot folder; without it, from the live cloud.",
)
@click.option("--output", type=click.Path(path_type=Path), required=True, help="Baseline folder to write.")
@_region_opt
@_endpoint_opt
@_config_opt
def capture(
    snapshot_dir: Path | None, output: Path, regions: tuple[str, ...], endpoint: str | None, config_path: Path | None
) -> None:
    """Write the current state as a baseline (accepted exposures already there are kept)."""
    cfg = _load_config(config_path)
    with gc_paused(freeze=True):
        live = (
            snapshot_source.load(snapshot_dir, cfg.limits.max_input_bytes, cfg.account_uids())
            if snapshot_dir
            else _live_snapshot(regions, endpoint, cfg)
        )
        written = baseline.capture(live, output)
    click.echo(f"wrote {len(live.groups)} groups to {len(written)} file(s) under {output}", err=True)
    if not live.complete:
        _echo_unread("not captured", live.errors)
        sys.exit(EXIT_INCOMPLETE)


@cli.group(name="snapshot")
def snapshot_group() -> None:
    """Save live state as an offline snapshot."""


@snapshot_group.command(name="save")
@click.option("--output", type=click.Path(path_type=Path), required=True, help="Folder to write the API JSON to.")
@_region_opt
@_endpoint_opt
@_config_opt
def snapshot_save(output: Path, regions: tuple[str, ...], endpoint: str | None, config_path: Path | None) -> None:
    """Scan live and write the raw API responses, replayable with `report --snapshot`."""
    from sgwatch.sources.snapshot_writer import write_snapshot

    raw = _live_scan(regions, endpoint, _load_config(config_path))
    try:
        write_snapshot(raw, output)
    except OSError as exc:
        raise SgwatchError(f"{output}: cannot write snapshot: {exc.strerror or exc}") from None
    click.echo(f"wrote {len(raw.responses)} responses to {output}", err=True)
    _echo_unread("not read", raw.errors)
    sys.exit(EXIT_OK if not raw.errors else EXIT_INCOMPLETE)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def checks(fmt: str) -> None:
    """List the check catalogue: ids, default severities, guidelines, CIS recommendations."""
    if fmt == "json":
        entries = [
            {
                **dataclasses.asdict(c),
                "cis": [{"benchmark": CIS_BENCHMARK, "id": r, "title": CIS_RECOMMENDATIONS[r].title} for r in c.cis],
            }
            for c in CATALOGUE
        ]
        _write(json.dumps(entries, indent=2) + "\n", None)
        return
    lines = []
    for c in CATALOGUE:
        guide = f"g{c.guideline}" if c.guideline else "-"
        cis = ",".join(c.cis) or "-"
        lines.append(f"{c.id:32} {c.area:8} {c.severity:9} {guide:4} {cis:8} {c.title}\n")
    lines.append(f"\ng: guideline in docs/checks.md; CIS: {CIS_BENCHMARK} recommendation\n")
    _write("".join(lines), None)


@cli.command()
@_config_opt
@_baseline_opt
@_managed_only_opt
@_region_opt
@_endpoint_opt
@click.option("--interval", type=click.FloatRange(min=1), default=None, help="Seconds between scans (default 300).")
@click.option(
    "--listen",
    callback=listen_flag,
    default=None,
    help="HOST:PORT or [IPv6]:PORT for /metrics, /healthz, /readyz (default 0.0.0.0:9108).",
)
@click.option("--state", "state_path", type=click.Path(path_type=Path), default=None, help="SQLite state file.")
@click.option("--log-level", type=click.Choice(config.LOG_LEVELS), default=None)
@click.option(
    "--shard", type=click.IntRange(min=0), default=None, help="This replica's shard, from 0 (with --total-shards)."
)
@click.option(
    "--total-shards", type=click.IntRange(min=1), default=None, help="Replicas sharing the accounts (default 1)."
)
def run(
    config_path: Path | None,
    baseline_paths: tuple[Path, ...],
    managed_only: bool,
    regions: tuple[str, ...],
    endpoint: str | None,
    interval: float | None,
    listen: str | None,
    state_path: Path | None,
    log_level: str | None,
    shard: int | None,
    total_shards: int | None,
) -> None:
    """Run the daemon: scan on a schedule, serve metrics, keep state, send alerts."""
    from sgwatch.daemon import Daemon, RunOptions

    sharding = {k: v for k, v in (("shard", shard), ("total_shards", total_shards)) if v is not None}
    flags = {
        "baseline": list(baseline_paths) or None,
        "managed_only": managed_only or None,
        "regions": list(regions) or None,
        "endpoint": endpoint,
        "interval": interval,
        "listen": listen,
        "state": state_path,
        "log_level": log_level,
        "sharding": sharding or None,
    }
    options = RunOptions(config_path, {k: v for k, v in flags.items() if v is not None})
    level = log_level or _load_config(config_path).log_level
    logs.configure(level, stream=sys.stdout)
    sys.exit(Daemon(options).run())


@cli.command()
@_config_opt
@_baseline_opt
def validate(config_path: Path | None, baseline_paths: tuple[Path, ...]) -> None:
    """Check the config and the baseline: build all that `run` and `report` build; exit 0 or 2."""
    from sgwatch.daemon import RunOptions, build, load

    loaded = load(RunOptions(config_path, {"baseline": list(baseline_paths)} if baseline_paths else {}))
    logs.register_secret(*config.secrets(loaded.config))
    built = build(loaded.config)
    sharding = loaded.config.sharding
    of_shard = f" in shard {sharding.shard} of {sharding.total_shards}" if sharding.total_shards > 1 else ""
    org = built.live.organization
    accounts = (
        f"every account of the resource directory (role {org.role_name})"
        if org
        else f"{len(built.live.accounts)} account(s)"
    )
    _write(
        f"ok: {desired.group_count(loaded.baseline)} groups in the baseline, {accounts}{of_shard}, "
        f"{len(built.channels)} notification channel(s)"
        + (f", change events on {built.events_listen}" if built.events_listen else "")
        + "\n",
        None,
    )


@cli.group(name="alert")
def alert_group() -> None:
    """Notification channels."""


@alert_group.command(name="test")
@click.option("--channel", required=True, help="Name of a channel under `notifications:` in the config.")
@_config_opt
def alert_test(channel: str, config_path: Path | None) -> None:
    """Send a test notification through one channel."""
    from sgwatch.alerting import parse_channels, send_test

    cfg = _load_config(config_path)
    channels = {c.name: c for c in parse_channels(cfg.notifications)}
    if channel not in channels:
        known = ", ".join(sorted(channels)) or "none configured"
        raise SgwatchError(f"{config_path or 'config'}: no notification channel named {channel!r} (known: {known})")
    send_test(channels[channel])
    click.echo(f"test notification sent through {channel!r}", err=True)


@cli.group(name="config")
def config_group() -> None:
    """Configuration helpers."""


@config_group.command(name="schema")
def config_schema() -> None:
    """Print the JSON Schema of the config file."""
    _write(json.dumps(config.Config.model_json_schema(), indent=2) + "\n", None)


def main(argv: list[str] | None = None) -> None:
    """Entry point: turn every known error into one line and a documented exit code."""
    # One-shot commands log warnings only, to stderr, so stdout stays the report; `run` reconfigures.
    global _stdout_failed
    _stdout_failed = False
    level = os.environ.get(config.LOG_LEVEL_ENV, "warning")
    if level not in config.LOG_LEVELS:
        shown = visible(level[:40])
        click.echo(
            f"sgwatch: error: {config.LOG_LEVEL_ENV}: {shown!r} is not one of {', '.join(config.LOG_LEVELS)}", err=True
        )
        sys.exit(EXIT_USAGE)
    logs.configure(level, stream=sys.stderr)
    code = _dispatch(argv)
    if _stdout_failed:  # already said in one line
        sys.exit(code)
    try:  # what a command printed may still sit in stdout's buffer: fail here, in one line, not at exit
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    except OSError as exc:
        _silence_stdout()
        click.echo(f"sgwatch: error: stdout: cannot write: {exc.strerror or exc}", err=True)
        code = EXIT_USAGE
    sys.exit(code)


def _dispatch(argv: list[str] | None) -> int | str | None:
    try:
        cli.main(args=argv, prog_name="sgwatch", standalone_mode=False)
    except SystemExit as exc:  # a command's own exit code
        return exc.code
    except SgwatchError as exc:
        # One line per problem (a config with three errors says all three), each complete on its own.
        for line in str(exc).splitlines() or [""]:
            click.echo(f"sgwatch: error: {visible(logs.scrub(line))}", err=True)  # it may quote ids or file contents
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("sgwatch: aborted", err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"sgwatch: error: {visible(logs.scrub(exc.format_message()))}", err=True)
        return EXIT_USAGE
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    return EXIT_OK
