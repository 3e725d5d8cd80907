"""Command line: ``python -m emulator [flags]``.

Prints exactly one line, ``EMULATOR_READY http://127.0.0.1:PORT/api/paas/v4``, once it listens,
then serves until SIGTERM/SIGINT. ``build_parser``/``config_from_args``/``main`` are public so the
project CLI can wrap them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from emulator.config import (
    CONTEXT_TOKENS,
    DEFAULT_TIER,
    FAULT_NAMES,
    GLM4_MODELS,
    PROFILES,
    EmulatorConfig,
    LatencySpec,
    parse_fault,
)
from emulator.server import start_runner
from pipeline.platform import TIER_CAPS

READY_PREFIX = "EMULATOR_READY "


def _latency_arg(text: str) -> LatencySpec:
    try:
        return LatencySpec.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _fault_arg(text: str) -> tuple[str, float] | None:
    if text.strip() == "none":
        return None
    try:
        return parse_fault(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emulator",
        description="Local GLM-compatible emulator (test double; answers are synthetic).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="realistic",
                        help="behaviour: realistic (token latency, a few bad answers; default) or clean "
                             "(instant, always well-formed)")  # fmt: skip
    parser.add_argument("--tier", choices=sorted(TIER_CAPS), default=DEFAULT_TIER,
                        help="account tier; sets the in-flight cap (V0..V3 = "
                             + "/".join(str(TIER_CAPS[t]) for t in sorted(TIER_CAPS)) + ")")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=None,
                        help="in-flight cap (overrides --tier); past it 429/1302")
    parser.add_argument("--latency", type=_latency_arg, default=None,
                        help="realistic | tokens:TTFT,PREFILL,DECODE[,JITTER] | fixed:S | uniform:LO,HI | "
                             "lognormal:MEDIAN,SIGMA (seconds; default: the profile's)")  # fmt: skip
    parser.add_argument("--latency-scale", type=float, default=1.0)
    parser.add_argument("--load-slowdown", type=float, default=None,
                        help="answers take (1 + F * in_flight/cap) times longer (default: the profile's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault", type=_fault_arg, action="append", default=None, metavar="NAME=RATE",
                        help=f"repeatable; replaces the profile's fault table ('none': no faults); names: "
                             f"{', '.join(FAULT_NAMES)} (alias 1301=sensitive_input)")  # fmt: skip
    parser.add_argument("--hang-seconds", type=float, default=3600.0)
    parser.add_argument("--models", default=",".join(GLM4_MODELS), metavar="A,B,...",
                        help="accepted model names (others answer 1211); default: the GLM-4 family")
    parser.add_argument("--context-tokens", type=int, default=CONTEXT_TOKENS,
                        help="context window; a longer prompt answers 1261")
    parser.add_argument("--fatal-1113-from", type=int, default=None, metavar="N")
    parser.add_argument("--fatal-401-from", type=int, default=None, metavar="N")
    key = parser.add_mutually_exclusive_group()
    key.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    key.add_argument("--api-key-stdin", action="store_true", help="read the required key from stdin's first line")
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="stop when stdin closes (process.py: the emulator dies with its parent)")  # fmt: skip
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    overrides: dict[str, Any] = {}
    if args.fault is not None:
        faults: dict[str, float] = {}
        for pair in args.fault:
            if pair is not None:
                faults[pair[0]] = faults.get(pair[0], 0.0) + pair[1]
        overrides["faults"] = faults
    if args.latency is not None:
        overrides["latency"] = args.latency
    if args.load_slowdown is not None:
        overrides["load_slowdown"] = args.load_slowdown
    api_key = sys.stdin.readline().strip() or None if args.api_key_stdin else args.api_key
    return EmulatorConfig.for_profile(
        args.profile,
        host=args.host,
        port=args.port,
        concurrency=args.concurrency if args.concurrency is not None else TIER_CAPS[args.tier],
        latency_scale=args.latency_scale,
        seed=args.seed,
        hang_seconds=args.hang_seconds,
        fatal_1113_from=args.fatal_1113_from,
        fatal_401_from=args.fatal_401_from,
        api_key=api_key,
        models=tuple(args.models.split(",")),
        context_tokens=args.context_tokens,
        **overrides,
    )


async def serve(config: EmulatorConfig, *, exit_on_stdin_eof: bool = False) -> None:
    """Serve until SIGTERM or SIGINT (or stdin's EOF); announce the base URL on stdout first."""
    runner, base_url = await start_runner(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if exit_on_stdin_eof:
        threading.Thread(target=_stop_on_eof, args=(loop, stop), daemon=True).start()
    print(READY_PREFIX + base_url, flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _stop_on_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stdin.read()
    loop.call_soon_threadsafe(stop.set)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(serve(config, exit_on_stdin_eof=args.exit_on_stdin_eof))
    except OSError as exc:
        print(f"emulator: cannot serve on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 2
    return 0
