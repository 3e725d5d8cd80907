"""Peer: bespokelabs-curator's ``LLM`` over the OpenAI-compatible backend, configured as its docs show.

Self-contained (stdlib, ``bespokelabs-curator`` and the sibling ``peer_io.py``), run from the
separate venv of the ``bench`` extra by ``bench_peers`` with the same JSONL of rendered request
bodies as ``peer_openai.py``; prints one JSON line with its own clock. Curator's cache goes to
``CURATOR_CACHE_DIR`` (a temp dir) and telemetry is off, so nothing leaves the machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TELEMETRY_ENABLED", "false")
os.environ.setdefault("CURATOR_DISABLE_RICH_DISPLAY", "1")
os.environ.setdefault("OPENAI_API_KEY", "not-needed-for-the-emulator")
_LITELLM = importlib.util.find_spec("litellm")  # ships tiktoken's cl100k_base: no download on an offline box
if _LITELLM is not None and _LITELLM.origin is not None:
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(_LITELLM.origin).parent / "litellm_core_utils" / "tokenizers"))

from bespokelabs import curator  # noqa: E402 (the environment above must be set before curator reads it)
from peer_io import read_args  # noqa: E402 (a sibling: this script runs by path)


class Extract(curator.LLM):  # type: ignore[misc]
    def prompt(self, row: dict[str, Any]) -> list[dict[str, str]]:
        return list(row["body"]["messages"])

    def parse(self, row: dict[str, Any], response: str) -> dict[str, Any]:
        return {"id": row["id"], "answer": response}


def main() -> None:
    args, rows = read_args()
    body = rows[0]["body"]
    llm = Extract(
        model_name=body["model"], backend="openai",
        generation_params={"max_tokens": body["max_tokens"], "response_format": body["response_format"]},
        backend_params={"base_url": args.base_url, "max_concurrent_requests": args.concurrency,
                        "max_requests_per_minute": 1_000_000, "max_tokens_per_minute": 1_000_000_000,
                        "max_retries": 5, "require_all_responses": False},
    )  # fmt: skip
    started = time.perf_counter()
    result = llm(rows)
    seconds = time.perf_counter() - started
    dataset = getattr(result, "dataset", result)
    with args.output.open("w") as sink:
        for record in dataset:
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(json.dumps({"rows": len(rows), "seconds": seconds, "ok": len(dataset), "errors": len(rows) - len(dataset)}))


if __name__ == "__main__":
    main()
