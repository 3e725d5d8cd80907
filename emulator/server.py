"""The aiohttp application: GLM's chat-completions endpoint plus ``/_emulator/*`` control routes.

Order of checks for a completion request: auth → fatal switches (401/1113 from the N-th request) →
parameter checks (400) → model (1211) → context window (1261) → concurrency cap (429/1302,
immediate) → fault draw → answer → latency from its tokens → send (JSON, or SSE when ``stream``).
Any other path answers 404 with a GLM error body; every response carries ``X-GLM-Emulator``.
A client that disconnects cancels its handler (``handler_cancellation``), so an abandoned hang
frees its slot.

Latency is measured from the request's arrival to the answer: the answer is built while the
"model thinks", and only the rest of the delay is slept. Building it after the sleep made every
answer late by its own CPU time, and a wave of answers due together late by the whole wave's.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import Counter
from typing import Any

import orjson
from aiohttp import web

from emulator.completion import Usage, build_completion
from emulator.config import EmulatorConfig
from emulator.faults import RATE_LIMIT_FAULTS, SERVER_FAULTS, FaultTable, decide_fault, draw_latency, first_token_share
from emulator.hashing import content_key, short_hex
from emulator.prompt_cache import PrefixCache, prompt_pieces
from emulator.streaming import send_stream, stream_chunks
from emulator.wire import WireError, check_request, error_for

logger = logging.getLogger(__name__)

COMPLETION_PATHS = ("/api/paas/v4/chat/completions", "/v4/chat/completions", "/chat/completions")
API_PREFIX = "/api/paas/v4"


class EmulatorState:
    """Counters and per-content attempt history of one emulator (one event loop, no locks needed)."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.faults = FaultTable.from_rates(config.faults)
        self.cache = PrefixCache()
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Back to the start state; requests still in flight stay counted as in flight."""
        self.requests_received = 0
        self.max_in_flight = self.in_flight
        self.completed_ok = 0
        self.by_outcome: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.by_code: Counter[str] = Counter()
        self.request_ids: Counter[str] = Counter()
        self.without_request_id = 0
        self.seen: Counter[str] = Counter()
        self.cache.clear()

    def admit(self) -> bool:
        if self.in_flight >= self.config.concurrency:
            return False
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return True

    def release(self) -> None:
        self.in_flight -= 1

    def note_request_id(self, request_id: Any) -> None:
        if isinstance(request_id, str) and request_id:
            self.request_ids[request_id] += 1
        else:
            self.without_request_id += 1

    def snapshot(self, with_ids: bool = False) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "requests_received": self.requests_received,
            "by_outcome": dict(self.by_outcome),
            "by_status": dict(self.by_status),
            "by_code": dict(self.by_code),
            "max_in_flight": self.max_in_flight,
            "in_flight": self.in_flight,
            "completed_ok": self.completed_ok,
            "unique_request_ids": len(self.request_ids),
            "duplicate_request_ids": sum(1 for n in self.request_ids.values() if n > 1),
            "requests_without_request_id": self.without_request_id,
            "config": self.config.describe(),
        }
        if with_ids:
            stats["request_ids"] = list(self.request_ids)
        return stats


STATE_KEY = web.AppKey("emulator_state", EmulatorState)


def build_app(config: EmulatorConfig) -> web.Application:
    """The emulator as an aiohttp application (serve it with ``AppRunner(handler_cancellation=True)``)."""
    app = web.Application(client_max_size=64 * 1024**2)
    app[STATE_KEY] = EmulatorState(config)
    app.on_response_prepare.append(_say_what_answered)
    for path in COMPLETION_PATHS:
        app.router.add_post(path, handle_completion)
    app.router.add_get("/_emulator/stats", handle_stats)
    app.router.add_post("/_emulator/reset", handle_reset)
    app.router.add_get("/_emulator/health", handle_health)
    app.router.add_route("*", "/{tail:.*}", handle_unknown)
    return app


#: Every response says what answered it: the body stays GLM's, the header tells the truth.
EMULATOR_HEADERS = {"X-GLM-Emulator": "glm-extract emulator; answers are synthetic"}
DELAY_HEADER = "X-GLM-Emulator-Delay"  # seconds the emulator waited on purpose (from arrival)


async def _say_what_answered(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(EMULATOR_HEADERS)


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json", headers=headers)


def _error(state: EmulatorState, error: WireError, outcome: str | None, request_id: str | None) -> web.Response:
    """An error response, counted (``outcome`` None: already counted when the fault was drawn)."""
    if outcome is not None:
        state.by_outcome[outcome] += 1
    state.by_status[str(error.status)] += 1
    state.by_code[error.code] += 1
    return _json(error.body(request_id), error.status)


async def handle_unknown(request: web.Request) -> web.Response:
    """Files, Batch, models, embeddings…: not emulated; a GLM-shaped 404, not a bare one."""
    state = request.app[STATE_KEY]
    message = f"{error_for('1222').message}: {request.method} {request.path} is not emulated"
    return _error(state, error_for("1222", message), "not_found", None)


async def handle_completion(request: web.Request) -> web.StreamResponse:
    arrived = asyncio.get_running_loop().time()
    state = request.app[STATE_KEY]
    state.requests_received += 1
    ordinal = state.requests_received
    try:
        body: Any = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    request_id = body.get("request_id") if isinstance(body, dict) else None
    request_id = request_id if isinstance(request_id, str) and request_id else None
    state.note_request_id(request_id)
    gate = _gate(state.config, request.headers.get("Authorization", ""), ordinal)
    if gate is not None:
        return _error(state, gate[1], gate[0], request_id)
    invalid = check_request(body)
    if invalid is not None:
        return _error(state, invalid, "bad_request", request_id)
    model = body.get("model")
    if not isinstance(model, str) or model.strip().lower() not in state.config.models:
        message = f"{error_for('1211').message} ({model!r} is not served here)"
        return _error(state, error_for("1211", message), "unknown_model", request_id)
    pieces = prompt_pieces(body["messages"], body.get("tools"))
    if sum(pieces) > state.config.context_tokens:
        message = f"{error_for('1261').message}: {sum(pieces)} tokens > {state.config.context_tokens}"
        return _error(state, error_for("1261", message), "context_too_long", request_id)
    if not state.admit():
        return _error(state, error_for("1302"), "over_capacity", request_id)
    try:
        return await _serve_admitted(state, request, body, request_id, arrived, pieces)
    finally:
        state.release()


def _gate(config: EmulatorConfig, authorization: str, ordinal: int) -> tuple[str, WireError] | None:
    """Auth and the fatal switches: (outcome, error) when the request must be refused."""
    if config.api_key is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), config.api_key):
            return "unauthorized", error_for("1002")
    if config.fatal_401_from is not None and ordinal >= config.fatal_401_from:
        return "fatal_401", error_for("1002")
    if config.fatal_1113_from is not None and ordinal >= config.fatal_1113_from:
        return "fatal_1113", error_for("1113")
    return None


async def _serve_admitted(state: EmulatorState, request: web.Request, body: dict[str, Any], request_id: str | None,
                          arrived: float, pieces: list[int]) -> web.StreamResponse:
    config = state.config
    key = content_key(body)
    attempt = state.seen[key]
    state.seen[key] += 1
    fault = decide_fault(state.faults, config.seed, key, attempt)
    state.by_outcome[fault or "ok"] += 1
    request_id = request_id or short_hex(key, attempt, state.requests_received, length=32)
    if fault in RATE_LIMIT_FAULTS or fault == "sensitive_input":
        code = "1301" if fault == "sensitive_input" else str(fault)
        return _error(state, error_for(code), None, request_id)
    usage = Usage(sum(pieces), state.cache.use(body["messages"], body.get("tools"), pieces))
    payload: dict[str, Any] | None = None
    if fault not in SERVER_FAULTS and fault != "reset":
        try:
            def record_fault(ident: str) -> str | None:  # a packed answer's records: drawn one by one
                return decide_fault(state.faults, config.seed, f"{key}#{ident}", attempt)

            payload = build_completion(body, fault, key, attempt, request_id, usage, record_fault)
        except Exception:  # a bug in the answer builder: GLM-shaped 500, never a bare aiohttp one
            logger.exception("answer builder failed on request %s", request_id)
            return _error(state, error_for("500"), "builder_error", request_id)
    completion = payload["usage"]["completion_tokens"] if payload else 0
    load = state.in_flight / config.concurrency
    delay = draw_latency(config.latency, config.latency_scale, config.seed, key, attempt,
                         prompt_tokens=usage.prompt_tokens, completion_tokens=completion, load=load,
                         slowdown=config.load_slowdown)
    delay = config.hang_seconds if fault == "hang" else delay
    headers = {DELAY_HEADER: repr(delay)}
    loop = asyncio.get_running_loop()
    if payload is not None and body.get("stream") is True and fault != "hang":
        state.by_status["200"] += 1
        state.completed_ok += fault is None
        share = first_token_share(config.latency, usage.prompt_tokens, completion)
        return await send_stream(request, stream_chunks(payload), arrived + delay * share, arrived + delay, headers)
    await asyncio.sleep(max(0.0, arrived + delay - loop.time()))
    if fault in SERVER_FAULTS:
        return _error(state, error_for(str(fault)), None, request_id)
    if payload is None:  # the "reset" fault
        return await _reset_connection(request)
    # a hang that outlived its client was cancelled above; one that did not answers normally
    state.by_status["200"] += 1
    state.completed_ok += fault is None
    return _json(payload, headers=headers)


async def _reset_connection(request: web.Request) -> web.StreamResponse:
    """Send the status line and headers, a few bytes of body, then abort the TCP connection."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.content_length = 4096
    await response.prepare(request)
    await response.write(b'{"id":"')
    transport = request.transport
    if transport is not None:
        transport.abort()
    return response


async def handle_stats(request: web.Request) -> web.Response:
    with_ids = request.query.get("ids", "") not in ("", "0", "false")
    return _json(request.app[STATE_KEY].snapshot(with_ids))


async def handle_reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return _json({"reset": True})


async def handle_health(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def start_runner(config: EmulatorConfig) -> tuple[web.AppRunner, str]:
    """Start serving ``config`` on its host/port; returns the runner and the base URL."""
    runner = web.AppRunner(build_app(config), access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}{API_PREFIX}"
