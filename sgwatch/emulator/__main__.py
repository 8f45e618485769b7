"""``python -m sgwatch.emulator``: serve an emulated ECS API until interrupted."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from sgwatch.emulator.resourcedirectory import enrol, organization_estate
from sgwatch.emulator.server import AccessKey, Emulator, Faults
from sgwatch.sources.raw import DEFAULT_ACCOUNT


def _key(spec: str) -> tuple[str, AccessKey]:
    # ID:SECRET[:ACCOUNT[:Action,Action...]]
    parts = spec.split(":")
    if len(parts) < 2:
        raise argparse.ArgumentTypeError("expected ID:SECRET[:ACCOUNT[:Action,...]]")
    account = parts[2] if len(parts) > 2 and parts[2] else "default"
    actions = frozenset(a for a in parts[3].split(",") if a) if len(parts) > 3 else None
    return parts[0], AccessKey(secret=parts[1], account=account, actions=actions)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sgwatch.emulator", description=__doc__)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--snapshot", type=Path, help="directory of raw API responses to serve")
    src.add_argument("--synthetic", type=int, metavar="N", default=0, help="generate N groups")
    p.add_argument("--regions", type=int, default=3, help="regions for --synthetic (default 3)")
    p.add_argument(
        "--prefix-lists",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --synthetic, give every prefix list a rule references its entries (default: yes)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8089)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--key",
        action="append",
        type=_key,
        default=[],
        metavar="ID:SECRET[:ACCOUNT[:ACTIONS]]",
        help="accepted AccessKey (repeatable); default test-ak:test-secret",
    )
    p.add_argument("--list-page-cap", type=int, default=100)
    p.add_argument("--attribute-page-cap", type=int, default=1000)
    p.add_argument("--interface-page-cap", type=int, default=500, help="DescribeNetworkInterfaces page cap")
    p.add_argument("--instance-page-cap", type=int, default=100, help="DescribeInstances page cap")
    p.add_argument(
        "--members",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --synthetic, give most groups members (ENIs of instances; default: yes)",
    )
    p.add_argument(
        "--organization",
        type=int,
        metavar="N",
        default=0,
        help="N member accounts of a resource directory, each with --synthetic groups of its own, "
        "read through the role --role-name; the first --key's account is the management account",
    )
    p.add_argument("--role-name", default="sgwatch-reader")
    p.add_argument("--sts-max-lifetime", type=float, default=None, help="seconds every assumed session lasts at most")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--throttle-rate", type=float, default=0.0)
    p.add_argument("--retry-after-ms", type=int, default=None, help="send x-acs-retry-after with throttles")
    p.add_argument("--error-5xx-rate", type=float, default=0.0)
    p.add_argument("--failing-region", action="append", default=[], help="region answered 503 (repeatable)")
    p.add_argument("--malformed-rate", type=float, default=0.0)
    p.add_argument("--malformed-shape", choices=("null", "object", "scalar"), default="null")
    p.add_argument("--lowercase", action="store_true", help="lowercase Policy/IpProtocol, Priority as int")
    p.add_argument(
        "--actiontrail-delay-seconds",
        type=float,
        default=0.0,
        help="seconds before a change's ActionTrail event is visible to LookupEvents (the cloud's: about 600)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    faults = Faults(
        latency_ms=args.latency_ms,
        throttle_rate=args.throttle_rate,
        throttle_retry_after_ms=args.retry_after_ms,
        error_5xx_rate=args.error_5xx_rate,
        failing_regions=list(args.failing_region),
        malformed_rate=args.malformed_rate,
        malformed_shape=args.malformed_shape,
        lowercase=args.lowercase,
        actiontrail_delay_seconds=args.actiontrail_delay_seconds,
    )
    estate, uids = (
        organization_estate(args.organization, args.synthetic, args.regions, seed=args.seed, members=args.members)
        if args.organization
        else (None, [])
    )
    emulator = Emulator(
        estate,
        snapshot=args.snapshot,
        synthetic_groups=args.synthetic,
        synthetic_regions=args.regions,
        synthetic_prefix_lists=args.prefix_lists,
        keys=dict(args.key) or None,
        host=args.host,
        port=args.port,
        seed=args.seed,
        list_page_cap=args.list_page_cap,
        attribute_page_cap=args.attribute_page_cap,
        interface_page_cap=args.interface_page_cap,
        instance_page_cap=args.instance_page_cap,
        synthetic_members=args.members,
        faults=faults,
    )
    if uids:
        emulator.directory.management = args.key[0][1].account if args.key else DEFAULT_ACCOUNT
        enrol(emulator.directory, emulator.sts, uids, args.role_name)
    emulator.sts.max_lifetime = args.sts_max_lifetime
    sys.stderr.write(
        f"ECS emulator on http://{args.host}:{args.port} ({emulator.estate.group_count()} groups); Ctrl-C stops\n"
    )
    with contextlib.suppress(KeyboardInterrupt):
        emulator.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
