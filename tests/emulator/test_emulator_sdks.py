"""The emulator against the official SDKs (zhipuai 2.x, zai-sdk) and the OpenAI SDK, as outside clients.

json_object chat, tools, streaming, and each error the platform gives mapped by the SDK to its own
exception; an outside client with its own prompt gets a non-empty, schema-shaped object.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema_rs
import openai
import pytest
import zai
import zhipuai
from zai.core import _errors as zai_errors
from zhipuai.core import _errors as zhipu_errors

from emulator import EmulatorConfig, serve_in_thread
from emulator.process import EmulatorThread
from tests.emulator.support import OUTSIDE_SCHEMA as SCHEMA

DOCUMENT = "This is Maria Lopez. Order 88812 arrived broken; please refund 45.90 USD. Very disappointed."
OWN_PROMPT = [  # an outside client's own prompt: a bare schema in prose, no tags
    {"role": "system", "content": "Extract the fields as JSON conforming to this JSON Schema:\n" + json.dumps(SCHEMA)},
    {"role": "user", "content": DOCUMENT},
]
TOOLS = [{"type": "function", "function": {"name": "extract_refund", "description": "record it", "parameters": SCHEMA}}]
KEY = "sk-emulated-key"

Client = Callable[[str], Any]
SDKS: dict[str, Client] = {
    "openai": lambda url: openai.OpenAI(api_key=KEY, base_url=url, max_retries=0),
    "zhipuai": lambda url: zhipuai.ZhipuAI(api_key=KEY, base_url=url, max_retries=0),
    "zai": lambda url: zai.ZhipuAiClient(api_key=KEY, base_url=url, max_retries=0),
}
#: the exception each SDK raises for an HTTP status (its own mapping, not ours)
ERRORS: dict[str, dict[int, type[Exception]]] = {
    "openai": {400: openai.BadRequestError, 401: openai.AuthenticationError, 429: openai.RateLimitError},
    "zhipuai": {400: zhipu_errors.APIRequestFailedError, 401: zhipu_errors.APIAuthenticationError,
                429: zhipu_errors.APIReachLimitError},
    "zai": {400: zai_errors.APIRequestFailedError, 401: zai_errors.APIAuthenticationError,
            429: zai_errors.APIReachLimitError},
}  # fmt: skip


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    with serve_in_thread(EmulatorConfig(seed=5)) as emu:
        yield emu


def _valid(text: str | None) -> dict[str, Any]:
    assert text
    instance = json.loads(text)
    assert isinstance(instance, dict) and instance
    assert jsonschema_rs.validator_for(SCHEMA).is_valid(instance), instance
    return instance


@pytest.mark.parametrize("sdk", sorted(SDKS))
def test_json_object_chat_with_the_clients_own_prompt(emulator: EmulatorThread, sdk: str) -> None:
    client = SDKS[sdk](emulator.base_url)
    answer = client.chat.completions.create(model="glm-4-air-250414", messages=OWN_PROMPT,
                                            response_format={"type": "json_object"})
    instance = _valid(answer.choices[0].message.content)
    assert instance["customer_name"] and answer.choices[0].finish_reason == "stop"
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0


@pytest.mark.parametrize("sdk", sorted(SDKS))
def test_tools(emulator: EmulatorThread, sdk: str) -> None:
    client = SDKS[sdk](emulator.base_url)
    answer = client.chat.completions.create(model="glm-4-air", messages=[{"role": "user", "content": DOCUMENT}],
                                            tools=TOOLS, tool_choice="auto")
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "extract_refund"
    _valid(call.function.arguments)


@pytest.mark.parametrize("sdk", sorted(SDKS))
def test_streaming(emulator: EmulatorThread, sdk: str) -> None:
    client = SDKS[sdk](emulator.base_url)
    chunks = list(client.chat.completions.create(model="glm-4-air-250414", messages=OWN_PROMPT, stream=True))
    assert len(chunks) >= 2
    _valid("".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def _refusal(sdk: str, config: EmulatorConfig, **request: Any) -> Exception:
    with serve_in_thread(config) as emu:
        client = SDKS[sdk](emu.base_url)
        body: dict[str, Any] = {"model": "glm-4-air-250414", "messages": OWN_PROMPT, **request}
        with pytest.raises(Exception) as caught:
            client.chat.completions.create(**body)
    return caught.value


CASES = {
    "1211": (EmulatorConfig(), {"model": "gpt-4o"}, 400),
    "1261": (EmulatorConfig(), {"messages": [{"role": "user", "content": "word " * 100_000}]}, 400),
    "1302": (EmulatorConfig(faults={"1302": 1.0}), {}, 429),
    "1113": (EmulatorConfig(fatal_1113_from=1), {}, 429),
    "1301": (EmulatorConfig(faults={"sensitive_input": 1.0}), {}, 400),
    "401": (EmulatorConfig(api_key="another-key"), {}, 401),
}


@pytest.mark.parametrize("sdk", sorted(SDKS))
@pytest.mark.parametrize("code", sorted(CASES))
def test_errors_map_to_the_sdks_own_exceptions(sdk: str, code: str) -> None:
    config, request, status = CASES[code]
    error = _refusal(sdk, config, **request)
    assert isinstance(error, ERRORS[sdk][status]), repr(error)
    assert getattr(error, "status_code", None) == status
    said = f"{getattr(error, 'code', '')} {error}"  # openai keeps the business code apart, in .code
    assert (code if code != "401" else "1002") in said
    assert KEY not in said
