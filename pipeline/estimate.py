"""What a run would cost, and what a row costs beyond its own words (pure; shared by the CLI, the flow
and benchmarks/bench_cost.py).

Token counts follow the platform's rule of thumb (:mod:`pipeline.tokens`), the same count the
emulator reports; GLM's ``usage`` is the truth, so when the journal holds real answers the estimate
is calibrated on them (:class:`Calibration`). Prices, cache and batch rules: docs/performance.md
(cost) and docs/glm_platform.md.

- *online*: every prompt and completion token at the online price;
- *cached*: the leading messages a prompt shares with the previous request (the fixed system
  message comes first, so every request but the first shares it) at the cached-token price;
- *batch*: the batch API charges half the online price (no cache assumed).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.outcomes import local_outcome
from pipeline.packing import (
    PackSettings,
    item_tokens,
    label,
    packed_system_message,
    plan_packs,
    render_packed_request,
)
from pipeline.prompts import RenderOptions, document_text, render_request, system_message
from pipeline.tasks import TaskSpec
from pipeline.tokens import count_completion_tokens, count_prompt_tokens, count_text_tokens

BATCH_PRICE_FACTOR = 0.5
NOT_YET = "not yet"  # chunking of long documents does not exist yet
PACKING_OFF = "off (the task sets no pack_tokens)"


@dataclass(frozen=True)
class Prices:
    """CNY per million tokens (``cached``: a prompt token the platform's prefix cache served)."""

    online: float
    cached: float
    batch_factor: float = BATCH_PRICE_FACTOR

    def online_cny(self, prompt: float, completion: float) -> float:
        return (prompt + completion) * self.online / 1e6

    def cached_cny(self, prompt: float, cached: float, completion: float) -> float:
        return ((prompt - cached + completion) * self.online + cached * self.cached) / 1e6

    def batch_cny(self, prompt: float, completion: float) -> float:
        return self.online_cny(prompt, completion) * self.batch_factor


def needs_request(task: TaskSpec, row: Mapping[str, Any]) -> bool:
    """Whether the engine would send ``row`` (:func:`pipeline.outcomes.local_outcome`)."""
    return local_outcome(task, row) is None


def shared_prefix_tokens(previous: Mapping[str, Any] | None, body: Mapping[str, Any]) -> int:
    """Prompt tokens ``body`` shares with ``previous`` as a prefix the cache can serve: the tool
    definitions and the leading whole messages both send alike (none for the first request, none
    when only the tools match). GLM does not document its cache's granularity; whole messages is
    also the emulator's rule (docs/emulator.md)."""
    if previous is None or previous.get("tools") != body.get("tools"):
        return 0
    before, now = previous.get("messages", ()), body.get("messages", ())
    same = 0
    while same < min(len(before), len(now)) and before[same] == now[same]:
        same += 1
    return count_prompt_tokens(now[:same], body.get("tools")) if same else 0


# ---------------------------------------------------------------------------------------------
# What a row pays for, over a sample with known answers (benchmark and tests)


@dataclass(frozen=True)
class SampleCosts:
    """Per-row means over a sample; ``floor`` = document + answer tokens, all a row must pay."""

    rows: int
    prompt_tokens_per_row: float
    overhead_tokens_per_row: float  # system message + template + message framing
    document_tokens_per_row: float
    completion_tokens_per_row: float
    cached_tokens_per_row: float
    floor_tokens_per_row: float
    cny_per_1k_rows_online: float
    cny_per_1k_rows_cached: float
    cny_per_1k_rows_batch: float
    overhead_ratio: float  # tokens paid ÷ floor, online
    overhead_ratio_cached: float  # the same with cached tokens weighed by their price


def sample_costs(task: TaskSpec, rows: Sequence[Mapping[str, Any]], answers: Sequence[str],
                 options: RenderOptions, prices: Prices, system: str | None = None) -> SampleCosts:
    """Render each row (as the engine does), split its prompt into ours and the document, and price
    it with its answer text; rows the engine would not send are left out."""
    system = system if system is not None else system_message(task, options.mode)
    prompt = overhead = document = completion = cached = 0
    sent = 0
    previous: Mapping[str, Any] | None = None
    for row, answer in zip(rows, answers, strict=True):
        if not needs_request(task, row):
            continue
        body = render_request(task, row, options, system)
        tokens = count_prompt_tokens(body["messages"], body.get("tools"))
        doc = count_text_tokens(document_text(task, row))
        prompt, document, overhead = prompt + tokens, document + doc, overhead + tokens - doc
        cached += shared_prefix_tokens(previous, body)
        completion += count_completion_tokens(answer)
        previous, sent = body, sent + 1
    return _per_row(sent, prompt, overhead, document, completion, cached, completion, prices)


def packed_sample_costs(task: TaskSpec, rows: Sequence[Mapping[str, Any]], answers: Sequence[str],
                        options: RenderOptions, prices: Prices, settings: PackSettings) -> SampleCosts:
    """:func:`sample_costs` with the rows packed as the engine packs them (``settings``): each pack
    one request whose answer is the rows' answers keyed by label, a row alone sent unpacked. The
    floor is the rows' own (document + unpacked answer), so it equals the unpacked floor."""
    system, packed_system = system_message(task, options.mode), packed_system_message(task)
    sendable = [(row, answer) for row, answer in zip(rows, answers, strict=True) if needs_request(task, row)]
    prompt = document = completion = cached = floor_completion = 0
    previous: Mapping[str, Any] | None = None
    for group in plan_packs([item_tokens(task, row) for row, _ in sendable], settings):
        members = [sendable[i] for i in group]
        if len(members) == 1:
            body = render_request(task, members[0][0], options, system)
            answer_text = members[0][1]
        else:
            body = render_packed_request(task, [row for row, _ in members], options, packed_system)
            answer_text = "{" + ",".join(f'"{label(i)}":{a}' for i, (_, a) in enumerate(members)) + "}"
        prompt += count_prompt_tokens(body["messages"], body.get("tools"))
        document += sum(count_text_tokens(document_text(task, row)) for row, _ in members)
        completion += count_completion_tokens(answer_text)
        floor_completion += sum(count_completion_tokens(a) for _, a in members)
        cached += shared_prefix_tokens(previous, body)
        previous = body
    return _per_row(len(sendable), prompt, prompt - document, document, completion, cached, floor_completion, prices)


def _per_row(sent: int, prompt: int, overhead: int, document: int, completion: int, cached: int,
             floor_completion: int, prices: Prices) -> SampleCosts:
    n = max(sent, 1)
    floor = (document + floor_completion) / n
    paid_cached = (prompt - cached + completion) + cached * prices.cached / prices.online if prices.online else 0.0
    return SampleCosts(
        rows=sent, prompt_tokens_per_row=prompt / n, overhead_tokens_per_row=overhead / n,
        document_tokens_per_row=document / n, completion_tokens_per_row=completion / n,
        cached_tokens_per_row=cached / n, floor_tokens_per_row=floor,
        cny_per_1k_rows_online=prices.online_cny(prompt, completion) / n * 1000,
        cny_per_1k_rows_cached=prices.cached_cny(prompt, cached, completion) / n * 1000,
        cny_per_1k_rows_batch=prices.batch_cny(prompt, completion) / n * 1000,
        overhead_ratio=(prompt + completion) / n / floor if floor else math.nan,
        overhead_ratio_cached=paid_cached / n / floor if floor else math.nan,
    )


# ---------------------------------------------------------------------------------------------
# Estimate of a run before it is made (CLI `estimate`, flow estimate-only)


def skeleton_answer_tokens(schema: Mapping[str, Any]) -> int:
    """Completion tokens of a typical answer guessed from the schema's shape: every key, enums by
    their longest value, strings half their ``maxLength`` (at most 60 characters, else 24), two
    items per array. Used only when the journal holds no real answers to learn from."""
    return count_completion_tokens(_skeleton_text(schema))


_SCALAR_SKELETONS = {"number": "1234.5", "integer": "1234", "boolean": "false", "null": "null"}


def _skeleton_text(schema: Any) -> str:
    if not isinstance(schema, Mapping):
        return "null"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return max((f'"{v}"' if isinstance(v, str) else str(v) for v in schema["enum"]), key=len)
    types = schema.get("type")
    kind = types if isinstance(types, str) else next((t for t in types or [] if t != "null"), "string")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return "{" + ",".join(f'"{k}":{_skeleton_text(v)}' for k, v in props.items()) + "}"
    if kind == "array":
        item = _skeleton_text(schema.get("items"))
        return f"[{item},{item}]"
    if kind in _SCALAR_SKELETONS:
        return _SCALAR_SKELETONS[kind]
    length = schema.get("maxLength")
    chars = min(int(length) // 2, 60) if isinstance(length, int) else 24
    return '"' + " ".join(["word"] * max(1, chars // 5)) + '"'


@dataclass(frozen=True)
class Calibration:
    """What the journal's real answers teach: actual prompt tokens ÷ our count, completion tokens
    per answer. ``answers == 0``: nothing learnt (scale 1, completion guessed from the schema)."""

    answers: int = 0
    prompt_scale: float = 1.0
    completion_per_request: float | None = None

    def completion(self, task: TaskSpec) -> float:
        return self.completion_per_request if self.completion_per_request is not None \
            else skeleton_answer_tokens(task.schema)


def calibrate(pairs: Iterable[tuple[int, int, int]]) -> Calibration:
    """From (our prompt count, actual prompt tokens, actual completion tokens) of answers that took
    one request (no retry, no re-ask), so their usage is one request's."""
    ours = actual = completion = answers = 0
    for counted, prompt, answer in pairs:
        if counted <= 0 or prompt <= 0:
            continue
        ours, actual, completion, answers = ours + counted, actual + prompt, completion + answer, answers + 1
    if not answers:
        return Calibration()
    return Calibration(answers=answers, prompt_scale=actual / ours, completion_per_request=completion / answers)


@dataclass
class Estimate:
    """Counts and prices of a run that has not been made (JSON-ready through :meth:`as_dict`)."""

    task: str
    input: str
    rows: int = 0
    shards: int = 0
    skipped: int = 0
    requests: int = 0
    from_journal: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    cost_cny: float = 0.0
    cost_cny_cached: float = 0.0
    cost_cny_batch: float = 0.0
    price_cny_per_mtok: float = 0.0
    price_cached_cny_per_mtok: float = 0.0
    calibrated_on: int = 0  # real answers in the journal the figures were calibrated on
    prompt_scale: float = 1.0
    completion_per_request: float = 0.0
    requests_after_packing: int | str = PACKING_OFF
    requests_after_chunking: str = NOT_YET
    # counted while walking the rows, turned into tokens by :func:`finish`
    _counted_prompt: int = field(default=0, repr=False)
    _counted_cached: int = field(default=0, repr=False)
    _sent: int = field(default=0, repr=False)  # requests after packing

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        for key in ("cost_cny", "cost_cny_cached", "cost_cny_batch"):
            data[key] = round(data[key], 6)
        data["prompt_scale"] = round(self.prompt_scale, 4)
        data["completion_per_request"] = round(self.completion_per_request, 1)
        return {**data, "estimate_only": True}


@dataclass
class EstimateWalk:
    """State carried across shards: the previous prompt (for the shared prefix) and the calibration
    pairs read from the journal."""

    previous: Mapping[str, Any] | None = None
    pairs: list[tuple[int, int, int]] = field(default_factory=list)


def add_rows(estimate: Estimate, walk: EstimateWalk, task: TaskSpec, rows: Sequence[Mapping[str, Any]],
             bodies: Mapping[str, Mapping[str, Any]], hits: Mapping[str, Any], real: Mapping[str, Any],
             sent: Sequence[Mapping[str, Any]] | None = None) -> None:
    """Add one shard: ``bodies`` by request key (the rows that need a request), ``hits`` the journal's
    final answers a run would reuse, ``real`` the answers a real endpoint gave to these requests
    (objects with ``attempts``, ``reasks``, ``prompt_tokens``, ``completion_tokens``); ``sent``: the
    bodies a packing task sends for the rows not in the journal (:func:`packed_bodies`)."""
    estimate.rows += len(rows)
    estimate.skipped += sum(not needs_request(task, row) for row in rows)
    todo = []
    for key, body in bodies.items():
        counted = count_prompt_tokens(body["messages"], body.get("tools"))
        answer = real.get(key)
        if answer is not None and answer.attempts == 1 and answer.reasks == 0:
            walk.pairs.append((counted, answer.prompt_tokens, answer.completion_tokens))
        if key in hits:
            estimate.from_journal += 1
            continue
        estimate.requests += 1
        todo.append(body)
    for body in todo if sent is None else sent:
        estimate._sent += 1
        estimate._counted_prompt += count_prompt_tokens(body["messages"], body.get("tools"))
        estimate._counted_cached += shared_prefix_tokens(walk.previous, body)
        walk.previous = body
    if sent is not None:
        estimate.requests_after_packing = estimate._sent


def packed_bodies(task: TaskSpec, options: RenderOptions, settings: PackSettings,
                  todo: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The bodies a packing task sends for ``todo`` ((row, unpacked body) of each request key not in
    the journal, in input order): packs as the engine groups them, a row alone unpacked."""
    groups = plan_packs([item_tokens(task, row) for row, _ in todo], settings)
    system = packed_system_message(task)
    return [dict(todo[group[0]][1]) if len(group) == 1
            else render_packed_request(task, [todo[i][0] for i in group], options, system) for group in groups]


def finish(estimate: Estimate, walk: EstimateWalk, task: TaskSpec, prices: Prices) -> Estimate:
    """Calibrate on what the journal taught and price the estimate."""
    calibration = calibrate(walk.pairs)
    per_answer = calibration.completion(task)
    estimate.calibrated_on = calibration.answers
    estimate.prompt_scale = calibration.prompt_scale
    estimate.completion_per_request = per_answer
    estimate.prompt_tokens = round(estimate._counted_prompt * calibration.prompt_scale)
    estimate.cached_tokens = min(round(estimate._counted_cached * calibration.prompt_scale), estimate.prompt_tokens)
    estimate.completion_tokens = round(per_answer * estimate.requests)
    estimate.price_cny_per_mtok, estimate.price_cached_cny_per_mtok = prices.online, prices.cached
    estimate.cost_cny = prices.online_cny(estimate.prompt_tokens, estimate.completion_tokens)
    estimate.cost_cny_cached = prices.cached_cny(estimate.prompt_tokens, estimate.cached_tokens,
                                                 estimate.completion_tokens)
    estimate.cost_cny_batch = prices.batch_cny(estimate.prompt_tokens, estimate.completion_tokens)
    return estimate


def estimate_check(schema: Mapping[str, Any], rule_prompt_tokens: int, first_answers: int,
                   actual_prompt: int, actual_completion: int) -> dict[str, Any]:
    """For a run's summary: what an uncalibrated estimate of the requests it answered would have
    said (their prompts by the rule of thumb, answers guessed from the schema) against the usage
    the endpoint reported (re-asks included), as a signed share of actual."""
    predicted = rule_prompt_tokens + skeleton_answer_tokens(schema) * first_answers
    actual = actual_prompt + actual_completion
    return {
        "requests": first_answers,
        "estimated_tokens": predicted,
        "actual_tokens": actual,
        "error": round((predicted - actual) / actual, 4) if actual else None,
    }
