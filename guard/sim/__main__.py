"""``python -m guard.sim``: serve a simulated Admin API until killed.

The first line on stdout is the base URL (``http://127.0.0.1:PORT``), flushed, so a parent
process can read it and point a client at it.

The analytics API is shaped by ``--discount 0.15``, ``--analytics-lag-hours 4``,
``--revision-hours 6``, ``--price-error claude-sonnet-5-5=1.10`` (repeatable), and switched off
by ``--no-analytics`` (404) or refused by ``--hipaa`` (400).

The Spend Limits API (reference §7) is served with ``--usage-tier-usd 200000`` (the read-only
cap), ``--org-spend-limit-usd 2000`` and ``--workspace-spend-limit WORKSPACE_ID=500``
(repeatable); ``--no-spend-limits-access`` answers every call 403 as for an organization
without early access. Without any of these it is not served (404).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from guard.sim.clock import SimClock
from guard.sim.org import SimOrg, size_of
from guard.sim.params import ApiError, parse_time
from guard.sim.server import SimServer
from guard.sim.spend_limits import SpendLimitBook

DEFAULT_ADMIN_KEY = "sk-ant-admin01-simulated-key"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m guard.sim", description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", type=_size, default="small",
                        help="small, large (200 workspaces × 2,000 keys) or WORKSPACESxKEYS")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--now", type=_moment,
                        help="simulated now, RFC 3339 (default: the wall clock)")
    parser.add_argument("--lag-minutes", type=float, default=3.0)
    parser.add_argument("--admin-key", default=DEFAULT_ADMIN_KEY)
    parser.add_argument("--realtime", action="store_true",
                        help="advance the simulated clock with the wall clock")
    parser.add_argument("--discount", type=_decimal, default=Decimal(0),
                        help="negotiated discount of analytics amounts, e.g. 0.15")
    parser.add_argument("--analytics-lag-hours", type=float, default=4.0)
    parser.add_argument("--revision-hours", type=int, default=0,
                        help="hours after which late billing data revises an analytics hour")
    parser.add_argument("--price-error", type=_price_error, action="append", default=[],
                        metavar="MODEL=FACTOR", help="bill MODEL's tokens at FACTOR × list")
    parser.add_argument("--hipaa", action="store_true",
                        help="refuse the analytics API as for a HIPAA-ready organization")
    parser.add_argument("--no-analytics", dest="analytics", action="store_false",
                        help="serve no analytics API (404)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="answer every request this many milliseconds late")
    parser.add_argument("--usage-tier-usd", type=_decimal,
                        help="serve the Spend Limits API with this usage-tier cap")
    parser.add_argument("--org-spend-limit-usd", type=_decimal,
                        help="the organization's monthly spend limit (serves the API)")
    parser.add_argument("--workspace-spend-limit", type=_price_error, action="append",
                        default=[], metavar="WORKSPACE_ID=USD",
                        help="a workspace's monthly spend limit (serves the API)")
    parser.add_argument("--no-spend-limits-access", action="store_true",
                        help="serve the Spend Limits API as 403 (no early access)")
    return parser.parse_args(argv)


def spend_limits(args: argparse.Namespace, created: datetime) -> SpendLimitBook | None:
    """The Spend Limits API the flags ask for, or ``None`` (404)."""
    if not (args.usage_tier_usd is not None or args.org_spend_limit_usd is not None
            or args.workspace_spend_limit or args.no_spend_limits_access):
        return None
    tier = args.usage_tier_usd if args.usage_tier_usd is not None else Decimal(200_000)
    return SpendLimitBook(created, tier, args.org_spend_limit_usd,
                          dict(args.workspace_spend_limit),
                          access=not args.no_spend_limits_access)


def _size(text: str) -> str:
    try:
        size_of(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a decimal number") from None


def _price_error(text: str) -> tuple[str, Decimal]:
    model, sep, factor = text.partition("=")
    if not sep or not model:
        raise argparse.ArgumentTypeError(f"{text!r} is not MODEL=FACTOR")
    return model, _decimal(factor)


def _moment(text: str) -> datetime:
    try:
        return parse_time(text, "--now")
    except ApiError as error:
        raise argparse.ArgumentTypeError(error.message) from None


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until interrupted."""
    args = parse_args(argv)
    clock = SimClock(args.now or datetime.now(UTC))
    server = SimServer(SimOrg.sized(args.seed, args.size), clock, admin_key=args.admin_key,
                       lag=timedelta(minutes=args.lag_minutes), host=args.host, port=args.port,
                       analytics_lag=timedelta(hours=args.analytics_lag_hours),
                       discount=args.discount, price_errors=dict(args.price_error),
                       revision_hours=args.revision_hours, analytics=args.analytics,
                       hipaa=args.hipaa,
                       spend_limits=spend_limits(args, clock.now() - timedelta(days=30)))
    server.latency_s = args.latency_ms / 1000
    with server:
        print(server.base_url, flush=True)
        try:
            _wait(clock, realtime=args.realtime)
        except KeyboardInterrupt:
            sys.exit(0)


def _wait(clock: SimClock, *, realtime: bool) -> None:
    last = time.monotonic()
    while True:
        time.sleep(1.0)
        if realtime:
            current = time.monotonic()
            clock.advance(timedelta(seconds=current - last))
            last = current


if __name__ == "__main__":
    main()
