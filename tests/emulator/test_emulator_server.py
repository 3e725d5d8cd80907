"""The HTTP surface, served in a background thread: wire format, errors, faults, stats."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from emulator import EmulatorConfig, LatencySpec, serve_in_thread
from emulator.config import FAULT_NAMES
from emulator.faults import FaultTable, decide_fault
from emulator.hashing import content_key
from emulator.process import EmulatorThread

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["order_id", "sentiment", "summary"],
    "properties": {
        "order_id": {"type": ["string", "null"]},
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "summary": {"type": "string", "maxLength": 80},
    },
}
COMPLETION_KEYS = {"id", "request_id", "created", "model", "choices", "usage"}


def body_for(document: str, *, tools: bool = False, **extra: Any) -> dict[str, Any]:
    schema_text = json.dumps(SCHEMA)
    system = "Rules." if tools else f"Rules.\n<json_schema>\n{schema_text}\n</json_schema>"
    body: dict[str, Any] = {
        "model": "glm-4-air-250414",
        "messages": [{"role": "system", "content": system},
                     {"role": "user", "content": f"<document>\n{document}\n</document>"}],
        "max_tokens": 1000,
        **extra,
    }  # fmt: skip
    if tools:
        body["tools"] = [{"type": "function", "function": {"name": "record_extraction", "description": "d",
                                                           "parameters": SCHEMA}}]  # fmt: skip
        body["tool_choice"] = "auto"
    else:
        body["response_format"] = {"type": "json_object"}
    return body


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    with serve_in_thread(EmulatorConfig(seed=1)) as emu:
        yield emu


_CLIENT: list[httpx.Client] = []


@pytest.fixture(autouse=True, scope="module")
def _shared_client() -> Iterator[None]:
    """One client for the module: building an httpx.Client (TLS context) costs ~30 ms."""
    with httpx.Client(timeout=10) as client:
        _CLIENT.append(client)
        yield
        _CLIENT.clear()


def post(emu: EmulatorThread, body: Any, path: str = "/chat/completions", **kwargs: Any) -> httpx.Response:
    return _CLIENT[0].post(emu.base_url + path, json=body, **kwargs)


def test_completion_has_glm_shape(emulator: EmulatorThread) -> None:
    response = post(emulator, body_for("Order number is ORD-99812. Terrible!", request_id="rid-1"))
    assert response.status_code == 200
    assert "synthetic" in response.headers["X-GLM-Emulator"]
    data = response.json()
    assert set(data) == COMPLETION_KEYS
    assert data["request_id"] == "rid-1"
    assert data["model"] == "glm-4-air-250414"
    assert abs(data["created"] - time.time()) < 60
    (choice,) = data["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant" and "tool_calls" not in choice["message"]
    answer = json.loads(choice["message"]["content"])
    assert answer["order_id"] == "ORD-99812" and answer["sentiment"] == "negative"
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] > 20 and usage["completion_tokens"] > 5
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}


def test_request_id_is_generated_when_absent_and_answers_are_deterministic(emulator: EmulatorThread) -> None:
    first = post(emulator, body_for("same text")).json()
    second = post(emulator, body_for("same text")).json()
    assert first["request_id"] and first["request_id"] != second["request_id"]
    assert first["choices"] == second["choices"]


@pytest.mark.parametrize("path", ["/chat/completions", "/v4/chat/completions"])
def test_base_url_variants(emulator: EmulatorThread, path: str) -> None:
    root = emulator.base_url.removesuffix("/api/paas/v4")
    response = _CLIENT[0].post(root + path, json=body_for("x"))
    assert response.status_code == 200


def test_tools_mode_returns_a_tool_call(emulator: EmulatorThread) -> None:
    data = post(emulator, body_for("Order number is ORD-12345", tools=True)).json()
    (choice,) = data["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    (call,) = message["tool_calls"]
    assert call["type"] == "function" and call["id"]
    assert call["function"]["name"] == "record_extraction"
    assert json.loads(call["function"]["arguments"])["order_id"] == "ORD-12345"


def test_invalid_requests_get_platform_errors(emulator: EmulatorThread) -> None:
    cases = [
        ({"model": "m", "messages": []}, 400, "1214"),
        ({"model": "m", "messages": [{"role": "system", "content": "s"}]}, 400, "1214"),
        ({**body_for("x"), "max_tokens": 20000}, 400, "1214"),
        ({**body_for("x"), "temperature": 1.2}, 400, "1210"),
    ]
    for body, status, code in cases:
        response = post(emulator, body)
        assert response.status_code == status
        assert response.json()["error"]["code"] == code
    raw = _CLIENT[0].post(emulator.base_url + "/chat/completions", content=b"{not json")
    assert raw.status_code == 400 and raw.json()["error"]["code"] == "1214"
    stats = emulator.stats()
    assert stats["by_status"] == {"400": 5} and stats["by_code"] == {"1214": 4, "1210": 1}
    assert stats["by_outcome"] == {"bad_request": 5} and stats["max_in_flight"] == 0


def test_api_key_is_required_when_configured() -> None:
    with serve_in_thread(EmulatorConfig(api_key="sk-test-123")) as emu:
        missing = post(emu, body_for("x"))
        wrong = post(emu, body_for("x"), headers={"Authorization": "Bearer nope"})
        right = post(emu, body_for("x"), headers={"Authorization": "Bearer sk-test-123"})
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["error"]["code"] == "1002"
    assert "sk-test-123" not in wrong.text and "nope" not in wrong.text
    assert right.status_code == 200


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [("1302", 429, "1302"), ("1303", 429, "1303"), ("1305", 429, "1305"), ("1312", 429, "1312"),
     ("500", 500, "500"), ("503", 503, "503"), ("sensitive_input", 400, "1301")],
)  # fmt: skip
def test_error_faults(fault: str, status: int, code: str) -> None:
    with serve_in_thread(EmulatorConfig(faults={fault: 1.0})) as emu:
        response = post(emu, body_for("x", request_id="r-9"))
        stats = emu.stats()
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and isinstance(error["message"], str) and error["message"]
    assert stats["by_outcome"] == {fault: 1} and stats["by_code"] == {code: 1}
    assert stats["completed_ok"] == 0


def test_broken_answer_faults_in_json_mode() -> None:
    seen: dict[str, dict[str, Any]] = {}
    for fault in ("fence", "prose", "malformed", "schema_violation", "truncated", "empty", "sensitive_output"):
        with serve_in_thread(EmulatorConfig(faults={fault: 1.0})) as emu:
            response = post(emu, body_for("Order ORD-12345, great service"))
        assert response.status_code == 200
        seen[fault] = response.json()
    content = {name: data["choices"][0]["message"]["content"] for name, data in seen.items()}
    finish = {name: data["choices"][0]["finish_reason"] for name, data in seen.items()}
    assert content["fence"].startswith("```json")
    assert content["empty"] == ""
    for name in ("prose", "malformed", "truncated"):
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(content[name])
    assert "order_id" not in orjson.loads(content["schema_violation"])
    assert finish["truncated"] == "length" and seen["truncated"]["usage"]["completion_tokens"] == 1000
    assert finish["sensitive_output"] == "sensitive"
    assert seen["sensitive_output"]["content_filter"] == [{"role": "assistant", "level": 1}]
    assert {finish[n] for n in ("fence", "prose", "malformed", "schema_violation", "empty")} == {"stop"}


def test_broken_answers_in_tools_mode() -> None:
    with serve_in_thread(EmulatorConfig(faults={"fence": 1.0})) as emu:
        fenced = post(emu, body_for("x", tools=True)).json()["choices"][0]
    with serve_in_thread(EmulatorConfig(faults={"malformed": 1.0})) as emu:
        malformed = post(emu, body_for("x", tools=True)).json()["choices"][0]
    assert fenced["message"]["content"].startswith("```json") and "tool_calls" not in fenced["message"]
    assert malformed["finish_reason"] == "tool_calls"
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(malformed["message"]["tool_calls"][0]["function"]["arguments"])


def test_stats_count_and_reset(emulator: EmulatorThread) -> None:
    for request_id in ("a", "b", "a"):
        assert post(emulator, body_for("x", request_id=request_id)).status_code == 200
    post(emulator, body_for("x"))
    stats = emulator.stats(ids=True)
    assert stats["requests_received"] == 4 and stats["completed_ok"] == 4
    assert stats["by_outcome"] == {"ok": 4} and stats["by_status"] == {"200": 4}
    assert stats["unique_request_ids"] == 2 and stats["duplicate_request_ids"] == 1
    assert stats["requests_without_request_id"] == 1
    assert sorted(stats["request_ids"]) == ["a", "b"]
    assert "request_ids" not in emulator.stats()
    assert stats["max_in_flight"] == 1 and stats["in_flight"] == 0
    emulator.reset()
    fresh = emulator.stats()
    assert fresh["requests_received"] == 0 and fresh["by_outcome"] == {} and fresh["unique_request_ids"] == 0
    root = emulator.base_url.removesuffix("/api/paas/v4")
    assert _CLIENT[0].get(root + "/_emulator/health").status_code == 200


def test_fatal_1113_from_the_nth_request() -> None:
    with serve_in_thread(EmulatorConfig(fatal_1113_from=3)) as emu:
        statuses = [post(emu, body_for(f"doc {i}")) for i in range(5)]
    assert [r.status_code for r in statuses] == [200, 200, 429, 429, 429]
    error = statuses[2].json()["error"]
    assert error == {"code": "1113", "message": "Insufficient balance or no resource package. Please recharge."}


def test_fatal_401_from_the_nth_request() -> None:
    with serve_in_thread(EmulatorConfig(fatal_401_from=2)) as emu:
        statuses = [post(emu, body_for(f"doc {i}")).status_code for i in range(3)]
        stats = emu.stats()
    assert statuses == [200, 401, 401]
    assert stats["by_code"] == {"1002": 2} and stats["by_outcome"] == {"ok": 1, "fatal_401": 2}


def _documents_with_fault(table: FaultTable, seed: int, wanted: str | None, count: int) -> list[str]:
    found = []
    for i in range(10_000):
        document = f"document number {i}"
        if decide_fault(table, seed, content_key(body_for(document)), 0) == wanted:
            found.append(document)
            if len(found) == count:
                return found
    raise AssertionError("no such document")


def test_a_hang_does_not_block_other_requests_and_frees_its_slot() -> None:
    config = EmulatorConfig(seed=4, faults={"hang": 0.5}, concurrency=10, latency=LatencySpec.parse("fixed:0.05"))
    table = FaultTable.from_rates(config.faults)
    (hanging,) = _documents_with_fault(table, 4, "hang", 1)
    normal = _documents_with_fault(table, 4, None, 5)

    async def scenario(base_url: str) -> tuple[BaseException | None, list[int], bool]:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            hang = asyncio.create_task(client.post("/chat/completions", json=body_for(hanging), timeout=3.0))
            await asyncio.sleep(0.05)
            others = await asyncio.gather(*(client.post("/chat/completions", json=body_for(d)) for d in normal))
            hang_still_open = not hang.done()  # the others were answered while the hang held its slot
            error = (await asyncio.gather(hang, return_exceptions=True))[0]
        return (error if isinstance(error, BaseException) else None), [r.status_code for r in others], hang_still_open

    with serve_in_thread(config) as emu:
        error, statuses, hang_still_open = asyncio.run(scenario(emu.base_url))
        deadline = time.monotonic() + 5
        while emu.stats()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = emu.stats()
    assert isinstance(error, httpx.TimeoutException)
    assert statuses == [200] * 5 and hang_still_open
    assert stats["by_outcome"] == {"hang": 1, "ok": 5}
    assert stats["in_flight"] == 0


def test_reset_aborts_the_connection() -> None:
    with serve_in_thread(EmulatorConfig(faults={"reset": 1.0})) as emu:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            post(emu, body_for("x"))
        stats = emu.stats()
    assert stats["by_outcome"] == {"reset": 1} and stats["in_flight"] == 0


def test_every_fault_name_is_servable() -> None:
    faults = {name: 1 / len(FAULT_NAMES) for name in FAULT_NAMES if name != "hang"}
    with serve_in_thread(EmulatorConfig(faults=faults, seed=2)) as emu:
        for i in range(40):
            with contextlib.suppress(httpx.TransportError):  # the reset fault
                post(emu, body_for(f"doc {i}"))
        stats = emu.stats()
    assert stats["requests_received"] == 40
    assert sum(stats["by_outcome"].values()) == 40
    assert len(stats["by_outcome"]) >= 8
