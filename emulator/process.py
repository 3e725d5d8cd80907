"""Run the emulator beside a test or a run: as a subprocess, or in a background thread.

``start_emulator(config)`` launches ``python -m emulator``, waits for its
``EMULATOR_READY <base_url>`` line and returns an ``EmulatorProcess`` (a context manager). The child
watches its stdin and exits when the parent goes away, so no emulator outlives its owner even on
``kill -9``. ``serve_in_thread(config)`` runs the same server in a thread of this process, for fast
unit tests. Both offer ``base_url``, ``stats()``, ``reset()`` and ``stop()``.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
import weakref
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from emulator.cli import READY_PREFIX
from emulator.config import EmulatorConfig

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory that holds ``pipeline/``


class EmulatorStartError(RuntimeError):
    """The emulator did not announce itself in time (its stderr tail is in the message)."""


class _Controls(ABC):
    """Control routes over HTTP (stdlib only): stats, reset."""

    base_url: str

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/api/paas/v4")

    def stats(self, *, ids: bool = False) -> dict[str, Any]:
        """The counters of ``GET /_emulator/stats`` (``ids=True`` adds the request ids)."""
        url = self.root_url + "/_emulator/stats" + ("?ids=1" if ids else "")
        with urllib.request.urlopen(url, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

    def reset(self) -> None:
        """Zero the counters and the attempt history (``POST /_emulator/reset``)."""
        request = urllib.request.Request(self.root_url + "/_emulator/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @abstractmethod
    def stop(self, timeout: float = 5.0) -> int | None:
        """End the emulator; return its exit code when it is a process."""


class EmulatorProcess(_Controls):
    """A running emulator subprocess; ``stop()`` (or leaving the ``with`` block) ends it."""

    def __init__(self, process: subprocess.Popen[str], base_url: str, stderr: IO[bytes]) -> None:
        self.process = process
        self.base_url = base_url
        self._stderr = stderr
        self._finalizer = weakref.finalize(self, _terminate, process, stderr)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; returns the exit code. Safe to call twice."""
        self._finalizer.detach()
        return _terminate(self.process, self._stderr, timeout)


def _terminate(process: subprocess.Popen[str], stderr: IO[bytes], timeout: float = 5.0) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()
    stderr.close()
    return process.returncode


def start_emulator(config: EmulatorConfig, *, startup_timeout: float = 20.0) -> EmulatorProcess:
    """Launch ``python -m emulator`` for ``config`` and wait until it is ready."""
    argv = [sys.executable, "-m", "emulator", *config.to_argv(), "--exit-on-stdin-eof"]
    if config.api_key is not None:
        argv.append("--api-key-stdin")
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop); a file, unlike a pipe, never blocks the child
    process = subprocess.Popen(
        argv, cwd=_PACKAGE_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True
    )
    assert process.stdin is not None and process.stdout is not None
    if config.api_key is not None:
        process.stdin.write(config.api_key + "\n")
        process.stdin.flush()
    line = _read_line(process.stdout, startup_timeout)
    if not line.startswith(READY_PREFIX):
        _terminate(process, stderr, timeout=2.0)
        raise EmulatorStartError(f"emulator not ready after {startup_timeout}s: {line!r} {_tail(stderr)}")
    return EmulatorProcess(process, line[len(READY_PREFIX) :].strip(), stderr)


def _read_line(stream: IO[str], timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


def _tail(stderr: IO[bytes]) -> str:
    if stderr.closed:
        return ""
    stderr.seek(0)
    return "stderr: " + stderr.read()[-2000:].decode(errors="replace")


class EmulatorThread(_Controls):
    """The emulator served by an event loop in a daemon thread of this process."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.base_url = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: Any = None
        self._loop: Any = None
        self._thread = threading.Thread(target=self._run, name="glm-emulator", daemon=True)

    def start(self, timeout: float = 10.0) -> Self:
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise EmulatorStartError(f"in-thread emulator failed to start: {self._error!r}")
        return self

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the loop and join the thread (returns None: there is no exit code)."""
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        return None

    def _run(self) -> None:
        import asyncio

        from emulator.server import start_runner

        async def serve() -> None:
            runner, self.base_url = await start_runner(self.config)
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

        try:
            asyncio.run(serve())
        except BaseException as exc:  # noqa: BLE001 (reported to start(): a thread has nowhere to raise)
            self._error = exc
            self._ready.set()


def serve_in_thread(config: EmulatorConfig, *, startup_timeout: float = 10.0) -> EmulatorThread:
    """Start the emulator in a background thread; use as a context manager."""
    return EmulatorThread(config).start(startup_timeout)
