"""The emulator as a real subprocess: the concurrency cap, clean stop, no orphans, key over stdin."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from emulator import EmulatorConfig, LatencySpec, start_emulator

REPO = Path(__file__).resolve().parents[2]
BODY = {
    "model": "glm-4-air-250414",
    "messages": [{"role": "system", "content": "Rules."}, {"role": "user", "content": "<document>hi</document>"}],
}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _fire(base_url: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count + 5)
    async with httpx.AsyncClient(base_url=base_url, timeout=10, limits=limits) as client:
        return list(await asyncio.gather(*(client.post("/chat/completions", json=BODY) for _ in range(count))))


def test_cap_answers_1302_past_the_concurrency_limit() -> None:
    cap = 10
    config = EmulatorConfig(concurrency=cap, latency=LatencySpec.parse("fixed:0.3"))
    with start_emulator(config) as emulator:
        responses = asyncio.run(_fire(emulator.base_url, cap + 5))
        stats = emulator.stats()
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * cap + [429] * 5
    rejected = [r.json()["error"] for r in responses if r.status_code == 429]
    assert {e["code"] for e in rejected} == {"1302"}
    assert rejected[0]["message"].startswith("High concurrency usage of this API")
    assert stats["max_in_flight"] == cap
    assert stats["by_code"] == {"1302": 5} and stats["by_outcome"] == {"ok": cap, "over_capacity": 5}
    assert stats["completed_ok"] == cap and stats["in_flight"] == 0


def test_stop_ends_the_process_cleanly_and_twice_is_harmless() -> None:
    emulator = start_emulator(EmulatorConfig())
    assert emulator.base_url.startswith("http://127.0.0.1:") and emulator.base_url.endswith("/api/paas/v4")
    assert httpx.post(emulator.base_url + "/chat/completions", json=BODY, timeout=10).status_code == 200
    assert emulator.stop() == 0
    assert emulator.stop() == 0
    assert not _alive(emulator.pid)


def test_the_child_exits_when_its_parent_goes_away() -> None:
    """Closing the child's stdin is what the OS does when the parent dies (even on kill -9)."""
    with start_emulator(EmulatorConfig()) as emulator:
        assert emulator.process.stdin is not None
        emulator.process.stdin.close()
        emulator.process.wait(timeout=10)
        assert emulator.process.returncode == 0


def test_the_api_key_travels_over_stdin_not_argv() -> None:
    with start_emulator(EmulatorConfig(api_key="sk-emu-secret")) as emulator:
        assert not any("sk-emu-secret" in str(arg) for arg in emulator.process.args)  # type: ignore[union-attr]
        denied = httpx.post(emulator.base_url + "/chat/completions", json=BODY, timeout=10)
        allowed = httpx.post(
            emulator.base_url + "/chat/completions", json=BODY, timeout=10,
            headers={"Authorization": "Bearer sk-emu-secret"},
        )  # fmt: skip
    assert (denied.status_code, denied.json()["error"]["code"]) == (401, "1002")
    assert allowed.status_code == 200


def test_cli_prints_exactly_one_ready_line_and_exits_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0", "--seed", "7", "--fault", "1302=0.1",
         "--latency", "uniform:0.01,0.02", "--fatal-1113-from", "500", "--hang-seconds", "30"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("EMULATOR_READY http://127.0.0.1:") and line.rstrip().endswith("/api/paas/v4")
        time.sleep(0.1)
        process.terminate()
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert out == "" and "Traceback" not in err


def test_bad_flags_fail_fast() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emulator", "--fault", "teapot=0.5"],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "unknown fault" in result.stderr
    with pytest.raises(SystemExit):
        from emulator.cli import main

        main(["--latency", "gauss:1"])
