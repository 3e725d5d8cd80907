"""Item: the emulator honours the parameters GLM honours (max_tokens, model, context, stream, paths)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from emulator import EmulatorConfig, serve_in_thread
from emulator.process import EmulatorThread
from tests.emulator.support import run_pipeline

SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["order_id", "summary"],
    "properties": {"order_id": {"type": ["string", "null"]}, "summary": {"type": "string"}},
}  # fmt: skip
DOCUMENT = "Order A-123456 arrived broken. The box was crushed and the lamp inside is cracked. Please refund me."


def body_for(**extra: Any) -> dict[str, Any]:
    return {
        "model": "glm-4-air-250414", "response_format": {"type": "json_object"},
        "messages": [{"role": "system", "content": f"<json_schema>\n{json.dumps(SCHEMA)}\n</json_schema>"},
                     {"role": "user", "content": f"<document>\n{DOCUMENT}\n</document>"}],
        **extra,
    }  # fmt: skip


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    with serve_in_thread(EmulatorConfig(seed=1)) as emu:
        yield emu


def post(emu: EmulatorThread, body: Any, path: str = "/chat/completions") -> httpx.Response:
    return httpx.post(emu.base_url + path, content=orjson.dumps(body), timeout=10,
                      headers={"Content-Type": "application/json"})


def test_max_tokens_truncates_with_finish_reason_length(emulator: EmulatorThread) -> None:
    full = post(emulator, body_for()).json()
    cut = post(emulator, body_for(max_tokens=5)).json()
    assert full["choices"][0]["finish_reason"] == "stop"
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == 5 < full["usage"]["completion_tokens"]
    text, whole = cut["choices"][0]["message"]["content"], full["choices"][0]["message"]["content"]
    assert whole.startswith(text) and len(text) < len(whole)
    one = post(emulator, body_for(max_tokens=1)).json()
    assert one["choices"][0]["finish_reason"] == "length" and one["usage"]["completion_tokens"] == 1


def test_max_tokens_truncation_leads_to_a_reask(tmp_path: Path) -> None:
    with serve_in_thread(EmulatorConfig(concurrency=8)) as emu:
        summary = run_pipeline(emu.base_url, tmp_path, concurrency=8, max_tokens=10, max_reasks=1)
    asked = summary["rows"] - summary["status_counts"]["skipped"]  # the sample has a few blank texts
    distinct = asked - summary["requests"]["from_journal"]  # and a duplicate, asked once
    assert summary["requests"]["reasks"] == distinct > 0  # every answer was cut, then re-asked once
    assert summary["status_counts"]["invalid"] == asked
    assert {e["code"] for e in summary["errors"]} == {"truncated", "empty_text"}


@pytest.mark.parametrize("model", ["gpt-4o", "glm-9-imaginary", "", None])
def test_an_unknown_or_missing_model_is_1211(emulator: EmulatorThread, model: str | None) -> None:
    body = body_for()
    if model is None:
        del body["model"]
    else:
        body["model"] = model
    response = post(emulator, body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "1211"


@pytest.mark.parametrize("model", ["glm-4-air-250414", "GLM-4-Air", "glm-4-flash", "glm-4-plus", "glm-4.5-air"])
def test_the_glm_4_family_is_accepted(emulator: EmulatorThread, model: str) -> None:
    assert post(emulator, body_for(model=model)).status_code == 200


def test_the_accepted_models_are_configurable() -> None:
    with serve_in_thread(EmulatorConfig(models=("my-model",))) as emu:
        assert post(emu, body_for(model="my-model")).status_code == 200
        assert post(emu, body_for()).json()["error"]["code"] == "1211"


def test_a_prompt_over_the_context_window_is_1261(emulator: EmulatorThread) -> None:
    body = body_for()
    body["messages"][1]["content"] = "<document>\n" + "word " * 100_000 + "\n</document>"  # ~133K tokens
    response = post(emulator, body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "1261"
    assert post(emulator, body_for()).status_code == 200


def _events(response: httpx.Response) -> list[str]:
    return [line[len("data: "):] for line in response.text.splitlines() if line.startswith("data: ")]


def test_stream_true_answers_server_sent_events_ending_in_done(emulator: EmulatorThread) -> None:
    whole = post(emulator, body_for()).json()
    response = post(emulator, body_for(stream=True))
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/event-stream")
    events = _events(response)
    assert events[-1] == "[DONE]" and len(events) >= 3
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == whole["usage"]
    assert all("usage" not in c for c in chunks[:-1])
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}


def test_stream_in_tools_mode_sends_the_tool_call(emulator: EmulatorThread) -> None:
    body = body_for(stream=True, tools=[{"type": "function", "function": {"name": "rec", "parameters": SCHEMA}}])
    del body["response_format"]
    chunks = [json.loads(e) for e in _events(post(emulator, body))[:-1]]
    calls = [call for c in chunks for call in c["choices"][0]["delta"].get("tool_calls") or []]
    assert calls and calls[0]["function"]["name"] == "rec"
    arguments = "".join(call["function"].get("arguments") or "" for call in calls)
    assert set(json.loads(arguments)) == {"order_id", "summary"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(("method", "path"), [("GET", "/files"), ("POST", "/batches"), ("GET", "/models"),
                                              ("POST", "/embeddings")])
def test_unknown_paths_are_a_404_with_a_glm_error_body(emulator: EmulatorThread, method: str, path: str) -> None:
    response = httpx.request(method, emulator.base_url + path, timeout=10)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] and path.strip("/") in error["message"]
    assert response.headers["X-GLM-Emulator"]
