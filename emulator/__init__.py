"""A local GLM-compatible emulator: a test double and demo engine, never presented as a model.

It speaks GLM's chat-completions wire format (JSON or SSE), enforces a concurrency cap (429/1302
past it, the account tier's by default), refuses what GLM refuses (1211, 1261, 404), takes its
latency from the tokens of each request and answer, reports cached prompt prefixes, and injects
faults at configured rates, all deterministically from a seed. Two profiles: ``clean`` (the Python
default: instant, well-formed) and ``realistic`` (the CLI's default: token latency and a documented
share of bad answers). Answers are synthetic JSON filled from the document by simple rules, and
every response says so in its ``X-GLM-Emulator`` header.

Public API::

    EmulatorConfig, LatencySpec          configuration values (emulator.config)
    EmulatorConfig.for_profile(name)     a profile's latency, faults and slow-down
    start_emulator(config) -> EmulatorProcess     subprocess, context manager (emulator.process)
    serve_in_thread(config) -> EmulatorThread     same server in a background thread
    build_app(config) -> aiohttp.web.Application  for aiohttp's test utilities
    answer_request(body) -> Answer                the answer without faults (pure)
"""

from emulator.answers import Answer, answer_request
from emulator.config import FAULT_NAMES, EmulatorConfig, LatencySpec
from emulator.process import (
    EmulatorProcess,
    EmulatorStartError,
    EmulatorThread,
    serve_in_thread,
    start_emulator,
)
from emulator.server import build_app

__all__ = [
    "FAULT_NAMES",
    "Answer",
    "EmulatorConfig",
    "EmulatorProcess",
    "EmulatorStartError",
    "EmulatorThread",
    "LatencySpec",
    "answer_request",
    "build_app",
    "serve_in_thread",
    "start_emulator",
]
