"""SIGTERM handled like Ctrl-C: what systemd, Kubernetes and Prefect send to stop a process.

``asyncio.run`` turns Ctrl-C into a cancellation of the run, so every ``finally`` of the run path
runs (the journal commits what was answered, the output lock and part files are removed). A
SIGTERM gets the same treatment here; afterwards :class:`Terminated` says so, and the command
line prints one line and exits :data:`TERMINATED_EXIT`.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

from pipeline.errors import GlmExtractError

T = TypeVar("T")
TERMINATED_EXIT = 128 + signal.SIGTERM  # 143, the shell's code for "ended by SIGTERM"


class Terminated(GlmExtractError):
    """The run was stopped by SIGTERM; the journal keeps every answer received before it."""

    exit_code = TERMINATED_EXIT


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated("terminated (SIGTERM): answers so far are kept in the journal; rerun the same command "
                     "to resume")


def run_stoppable(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``; a SIGTERM cancels ``main`` (its clean-up runs) and raises :class:`Terminated`.

    Outside the event loop (before and after ``main``) a SIGTERM raises :class:`Terminated` at once."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return asyncio.run(_cancel_on_sigterm(main))
    finally:
        signal.signal(signal.SIGTERM, previous)


async def _cancel_on_sigterm(main: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def on_sigterm() -> None:
        received.append(signal.SIGTERM)
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await main
    except asyncio.CancelledError:
        if received:
            _raise_terminated(signal.SIGTERM, None)
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _raise_terminated)  # removing the loop's handler restored the default
