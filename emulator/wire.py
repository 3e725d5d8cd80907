"""GLM wire format: completion bodies, error bodies, and the platform's cheap request checks.

Shapes follow docs/glm_platform.md (responses and errors) (``{"error": {"code": "<string>", "message": …}}``
with the HTTP status the platform uses for that business code).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MODEL = "glm-4-air-250414"
MAX_TOKENS_LIMIT = 16384

#: business code → (HTTP status, message)
ERRORS: Mapping[str, tuple[int, str]] = {
    "500": (500, "Internal Error"),
    "503": (503, "The service is temporarily overloaded, please try again later"),
    "1002": (401, "Authorization Token非法，请确认Authorization Token正确传递。"),
    "1113": (429, "Insufficient balance or no resource package. Please recharge."),
    "1211": (400, "模型不存在，请检查模型代码。"),
    "1222": (404, "API 不存在"),
    "1261": (400, "Prompt 超长"),
    "1210": (400, "The temperature parameter is illegal.：限制数值范围[0,1]"),
    "1214": (400, "Invalid parameter. Please check the documentation."),
    "1301": (400, "系统检测到输入或生成内容可能包含不安全或敏感内容，"
                  "请您避免输入易产生敏感内容的提示语，感谢您的配合。"),
    "1302": (429, "High concurrency usage of this API, please reduce concurrency "
                  "or contact customer service to increase limits"),
    "1303": (429, "High frequency usage of this API, please reduce frequency "
                  "or contact customer service to increase limits"),
    "1305": (429, "Traffic limit triggered, please try again later"),
    "1312": (429, "The model is currently overloaded, please try again later or switch to another model"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class WireError:
    """An error answer: HTTP status, business code and message."""

    status: int
    code: str
    message: str

    def body(self, request_id: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"error": {"code": self.code, "message": self.message}}
        if request_id:
            out["request_id"] = request_id
        return out


def error_for(code: str, message: str | None = None) -> WireError:
    """The platform's error for a business code (status and default message from ``ERRORS``)."""
    status, default = ERRORS[code]
    return WireError(status, code, message or default)


def completion_body(
    *,
    task_id: str,
    request_id: str,
    created: int,
    model: str,
    message: dict[str, Any],
    finish_reason: str,
    usage: tuple[int, int],
    cached_tokens: int = 0,
    content_filter: bool = False,
) -> dict[str, Any]:
    """A chat-completion body exactly as GLM returns it."""
    prompt, completion = usage
    body: dict[str, Any] = {
        "id": task_id,
        "request_id": request_id,
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
        },
    }
    if content_filter:
        body["content_filter"] = [{"role": "assistant", "level": 1}]
    return body


def text_message(content: str) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def tool_message(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def check_request(body: Any) -> WireError | None:
    """The platform's cheap parameter checks; None when the body is acceptable."""
    if not isinstance(body, dict):
        return error_for("1214", "Invalid parameter: the request body must be a JSON object.")
    return _check_messages(body.get("messages")) or _check_sampling(body) or _check_options(body)


def _bad(field: str) -> WireError:
    return error_for("1214", f"Invalid parameter: {field}. Please check the documentation.")


def _check_messages(messages: Any) -> WireError | None:
    if not isinstance(messages, list) or not messages:
        return _bad("messages")
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if any(r not in ("system", "user", "assistant", "tool") for r in roles):
        return _bad("messages.role")
    if all(r in ("system", "assistant") for r in roles):
        return _bad("messages")
    return None


def _check_sampling(body: Mapping[str, Any]) -> WireError | None:
    temperature = body.get("temperature")
    if temperature is not None and (not _is_number(temperature) or not 0.0 <= temperature <= 1.0):
        return error_for("1210")
    top_p = body.get("top_p")
    if top_p is not None and (not _is_number(top_p) or not 0.0 < top_p <= 1.0):
        return _bad("top_p")
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT
    ):
        return _bad("max_tokens")
    return None


def _check_options(body: Mapping[str, Any]) -> WireError | None:
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > 1:
        return _bad("stop")
    tool_choice = body.get("tool_choice")
    if tool_choice is not None and tool_choice != "auto":
        return _bad("tool_choice")
    response_format = body.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, dict) or response_format.get("type") not in ("text", "json_object")
    ):
        return _bad("response_format")
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list) or len(tools) > 128):
        return _bad("tools")
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
