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

A run pays more than one answer per request: an answer that fails the schema or is cut at
``max_tokens`` is asked again (the prompt once more, with the bad answer and the validator's
errors, and a second answer), and a runaway answer is billed at ``max_tokens``. The estimate adds
an *allowance* for them (:class:`Allowance`): learnt from the journal's answers to these rows, and
from its newest answers to other rows of the task (:data:`HISTORY_ANSWERS`, last night's run for
tonight's new rows), both from the kind of endpoint the run will use (an emulator run may learn from
synthetic answers, a real run only from real ones), blended with a stated prior
(:data:`REASK_PRIOR`) that the journal outweighs as it grows. It also gives a *worst case*: every
answer runs to ``max_tokens`` and is re-asked ``max_reasks`` times.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from typing import Any

from pipeline.outcomes import local_outcome
from pipeline.packing import (
    PackSettings,
    is_packed_request_id,
    item_tokens,
    label,
    packed_system_message,
    plan_packs,
    render_packed_request,
)
from pipeline.prompts import RenderOptions, document_text, render_request, system_message
from pipeline.settings import Settings
from pipeline.tasks import TaskSpec
from pipeline.tokens import count_completion_tokens, count_prompt_tokens, count_text_tokens
from pipeline.validate import Reask, build_reask

BATCH_PRICE_FACTOR = 0.5
#: Re-asks per request assumed until the journal holds answers to learn from: the emulator's
#: realistic fault table (docs/emulator.md), where 5.3 % of answers need a re-ask (a value outside
#: an enum, a required field left out, a number written as a string, an answer cut at
#: ``max_tokens``) and a re-ask is re-asked as often (0.053 + 0.053²). GLM publishes no such rate:
#: a prior, not a measurement.
REASK_PRIOR = 0.056
#: Packed rows asked again alone per row, assumed the same way: the emulator's table drawn once per
#: record leaves ~5 % of records invalid and ~4.5 % missing. A prior, not a measurement.
ALONE_PRIOR = 0.095
#: How many answers the prior counts as when blended with the journal's answers.
PRIOR_WEIGHT = 50
#: How many of the journal's newest answers to other rows of the task (same model, same kind of
#: endpoint) the estimate learns from: enough that one answer is 0.05 %, few enough to read at once.
HISTORY_ANSWERS = 2000
DEFAULT_MAX_REASKS: int = Settings.model_fields["max_reasks"].default
DEFAULT_MAX_TOKENS: int = Settings.model_fields["max_tokens"].default
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
    """What the journal's real answers teach: actual prompt tokens ÷ our count (``scaled_on``: from
    answers to these rows' requests, whose prompts the estimate counts, and to other rows where the
    run recorded its count), completion tokens per answer (from those and from the other rows'
    answers journaled without a count). ``answers == 0``: nothing learnt (scale 1, completion
    guessed from the schema)."""

    answers: int = 0
    prompt_scale: float = 1.0
    completion_per_request: float | None = None
    scaled_on: int = 0

    def completion(self, task: TaskSpec) -> float:
        return self.completion_per_request if self.completion_per_request is not None \
            else skeleton_answer_tokens(task.schema)


def calibrate(pairs: Iterable[tuple[int, int, int]], elsewhere: Sequence[int] = ()) -> Calibration:
    """From (our prompt count, actual prompt tokens, actual completion tokens) of answers whose prompt
    we counted, and the completion tokens of answers whose prompt we did not (``elsewhere``), all of which
    took one request (no retry, no re-ask), so their usage is one request's."""
    ours = actual = completion = answers = 0
    for counted, prompt, answer in pairs:
        if counted <= 0 or prompt <= 0:
            continue
        ours, actual, completion, answers = ours + counted, actual + prompt, completion + answer, answers + 1
    total = answers + len(elsewhere)
    if not total:
        return Calibration()
    return Calibration(answers=total, prompt_scale=actual / ours if answers else 1.0,
                       completion_per_request=(completion + sum(elsewhere)) / total, scaled_on=answers)


# ---------------------------------------------------------------------------------------------
# What a run pays beyond one answer per request: re-asks and runaway answers


@dataclass(frozen=True)
class Observed:
    """One journaled answer to a row of the input: our count of its first prompt, what all its
    requests (first and re-asks) were billed, and how many re-asks it took."""

    counted: int
    prompt: int
    completion: int
    reasks: int


@dataclass(frozen=True)
class Past:
    """One of the journal's newest answers to another row of the task: what all its requests were
    billed and how many re-asks it took. Its prompt was not counted by us (the request is not stored)."""

    prompt: int
    completion: int
    reasks: int


@dataclass(frozen=True)
class Allowance:
    """Tokens beyond one answer per request, as shares of the first requests' tokens (the rows'
    own prompts, unpacked, and their answers). ``learnt_from == 0``: the prior alone."""

    reasks_per_request: float  # re-asks per row to pay (packed: rows asked again alone)
    prompt_share: float  # extra prompt tokens per prompt token of the rows' first requests
    cached_share: float  # of which the cache serves (a re-ask repeats its first prompt as a prefix)
    completion_share: float  # extra completion tokens per first-answer token (runaways included)
    learnt_from: int = 0
    packed: bool = False
    history_packed: bool = False  # the journal's answers to learn from came from packed requests
    history_owed: bool = False  # some of them are still owed a re-ask (their outcome is not known yet)
    from_history: int = 0  # of ``learnt_from``, answers to other rows (the task's newest)

    def source(self) -> str:
        prior = (f"a prior of {ALONE_PRIOR:.1%} of packed rows asked again alone" if self.packed
                 else f"a prior of {REASK_PRIOR:.1%} re-asks per request")
        if not self.learnt_from and self.history_owed:
            return (f"{prior}, the emulator's realistic fault table (some of the journal's answers to these rows "
                    "are still owed a re-ask: learning from the others would count only answers that passed)")
        if not self.learnt_from and self.history_packed:
            return (f"{prior}, the emulator's realistic fault table (the journal's answers to this task came "
                    "from packed requests: the rows a pack answered share its bill, the rest are its failures)")
        if not self.learnt_from:
            return f"{prior}, the emulator's realistic fault table (no answers in the journal to learn from)"
        own = self.learnt_from - self.from_history
        split = (f" ({own} to these rows, {self.from_history} to other rows: the task's newest by this model "
                 "from this kind of endpoint)" if self.from_history else "")
        return (f"learnt from {self.learnt_from} answers in the journal{split}, blended with {prior} "
                f"(weight {PRIOR_WEIGHT})")


@cache
def follow_up_tokens() -> int:
    """Prompt tokens a re-ask adds besides the bad answer's text: that answer's message framing and
    the follow-up message listing one validator error (:func:`pipeline.validate.build_reask`)."""
    error = "/issue_category: 'billing issue' is not one of ['billing', 'refund', 'delivery']"
    return count_prompt_tokens(build_reask({"messages": []}, "", Reask("schema_invalid", (error,)))["messages"])


def prior_allowance(rows_prompt: float, rows: int, answer: float, *, packed: bool = False) -> Allowance:
    """The stated prior for ``rows`` rows whose first prompts count ``rows_prompt`` tokens and whose
    answers ``answer`` each. A re-ask sends the prompt again with the bad answer and the follow-up
    (:func:`follow_up_tokens`) and gets a second answer; a packed row asked alone sends its own
    request. Answers cut at ``max_tokens`` are left to the worst case (0.3 % in the same table)."""
    if packed:
        return Allowance(ALONE_PRIOR, ALONE_PRIOR, 0.0, ALONE_PRIOR, packed=True)
    prompt_share = REASK_PRIOR * (1 + rows * (answer + follow_up_tokens()) / rows_prompt) if rows_prompt else 0.0
    return Allowance(REASK_PRIOR, prompt_share, REASK_PRIOR, REASK_PRIOR)


def learnt_allowance(observed: Sequence[Observed], prior: Allowance, answer: float,
                     history: Sequence[Past] = ()) -> Allowance:
    """What the journal's answers to these rows (``observed``) and to other rows of the task
    (``history``) teach, each weighing as many answers as it has, blended with ``prior`` (weight
    :data:`PRIOR_WEIGHT`): an answer without re-asks shows what a first request costs (prompt scale,
    answer size); everything a re-asked answer was billed beyond that is the allowance."""
    if prior.packed:
        return prior
    learnt = [(seen, n) for seen, n in ((_seen_rows(observed, answer), len(observed)),
                                         (_seen_elsewhere(history), len(history))) if seen is not None]
    if not learnt:
        return prior
    return replace(_blend(learnt, prior), from_history=sum(n for seen, n in learnt if seen.from_history))


def _seen_rows(observed: Sequence[Observed], answer: float) -> Allowance | None:
    """The allowance these rows' answers show: each one's first request is its own prompt as we count
    it, scaled by what the answers without re-asks were billed for theirs."""
    if not observed:
        return None
    single = [o for o in observed if not o.reasks]
    counted_single = sum(o.counted for o in single)
    scale = sum(o.prompt for o in single) / counted_single if counted_single else 1.0
    first_answer = sum(o.completion for o in single) / len(single) if single else answer
    first_prompt = scale * sum(o.counted for o in observed)
    extra_prompt = sum(o.prompt - scale * o.counted for o in observed if o.reasks)
    extra_completion = sum(o.completion - first_answer for o in observed if o.reasks)
    return Allowance(
        reasks_per_request=sum(o.reasks for o in observed) / len(observed),
        prompt_share=extra_prompt / first_prompt if first_prompt else 0.0,
        cached_share=sum(o.reasks for o in observed) / len(observed),
        completion_share=extra_completion / (len(observed) * first_answer) if first_answer else 0.0,
    )


def _seen_elsewhere(history: Sequence[Past]) -> Allowance | None:
    """The allowance answers to other rows show. Their prompts were not counted, so every answer's
    first request is taken as the mean billed prompt of the answers without re-asks (and its first
    answer as their mean answer): shares of the whole sample, not row by row. None without an answer
    that took no re-ask (nothing shows what a first request costs)."""
    single = [p for p in history if not p.reasks]
    if not single:
        return None
    first_prompt = sum(p.prompt for p in single) / len(single)
    first_answer = sum(p.completion for p in single) / len(single)
    reasked = [p for p in history if p.reasks]
    reasks = sum(p.reasks for p in history) / len(history)
    return Allowance(
        reasks_per_request=reasks,
        prompt_share=sum(p.prompt - first_prompt for p in reasked) / (len(history) * first_prompt)
        if first_prompt else 0.0,
        cached_share=reasks,
        completion_share=sum(p.completion - first_answer for p in reasked) / (len(history) * first_answer)
        if first_answer else 0.0,
        from_history=len(history),
    )


def _blend(learnt: Sequence[tuple[Allowance, int]], prior: Allowance) -> Allowance:
    """``learnt`` (what some answers showed, and how many) and ``prior`` (weight :data:`PRIOR_WEIGHT`),
    weighed by the answers each counts as."""
    total = sum(n for _, n in learnt) + PRIOR_WEIGHT

    def mix(part: Callable[[Allowance], float]) -> float:
        return (sum(n * part(seen) for seen, n in learnt) + PRIOR_WEIGHT * part(prior)) / total

    return Allowance(
        reasks_per_request=mix(lambda a: a.reasks_per_request),
        prompt_share=mix(lambda a: a.prompt_share),
        cached_share=mix(lambda a: a.cached_share),
        completion_share=mix(lambda a: a.completion_share),
        learnt_from=sum(n for _, n in learnt),
    )


@dataclass(frozen=True)
class Expected:
    """Tokens of a run: its first requests plus the allowance."""

    prompt: int
    cached: int
    completion: int
    extra_prompt: int
    extra_cached: int
    extra_completion: int


def expected_tokens(first_prompt: float, first_cached: float, first_completion: float, rows_prompt: float,
                    allowance: Allowance) -> Expected:
    """``first_*``: the requests to send (packed when the task packs); ``rows_prompt``: the rows'
    own first prompts, unpacked, on which the allowance's prompt shares are taken."""
    extra_prompt = round(allowance.prompt_share * rows_prompt)
    extra_cached = min(round(allowance.cached_share * rows_prompt), extra_prompt)  # a re-ask's cache is its prompt
    extra_completion = round(allowance.completion_share * first_completion)
    prompt = round(first_prompt) + extra_prompt
    return Expected(prompt=prompt, cached=min(round(first_cached) + extra_cached, prompt),
                    completion=round(first_completion) + extra_completion, extra_prompt=extra_prompt,
                    extra_cached=extra_cached, extra_completion=extra_completion)


def worst_case_tokens(sent_prompt: float, sent: int, rows_prompt: float, rows: int, max_tokens: int,
                      max_reasks: int, *, packed: bool) -> int:
    """Every answer runs to ``max_tokens`` and is re-asked ``max_reasks`` times, each re-ask carrying
    the previous answers (at most ``max_tokens`` each) and a follow-up; packed, every pack answers
    ``max_tokens`` and then every row is asked alone that way. A ceiling, not a forecast."""
    asks = max_reasks + 1
    alone = asks * rows_prompt + rows * (max_reasks * asks // 2 * (max_tokens + follow_up_tokens()) + asks * max_tokens)
    return round(sent_prompt + sent * max_tokens + alone) if packed else round(alone)


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
    prompt_tokens: int = 0  # the first requests' and the allowance's
    cached_tokens: int = 0
    completion_tokens: int = 0
    cost_cny: float = 0.0
    cost_cny_cached: float = 0.0
    cost_cny_batch: float = 0.0
    price_cny_per_mtok: float = 0.0
    price_cached_cny_per_mtok: float = 0.0
    calibrated_on: int = 0  # real answers in the journal the figures were calibrated on
    prompt_scale_on: int = 0  # of which answers whose prompt we counted (the prompt scale's)
    prompt_scale: float = 1.0
    completion_per_request: float = 0.0
    requests_after_packing: int | str = PACKING_OFF
    requests_after_chunking: str = NOT_YET
    allowance: dict[str, Any] = field(default_factory=dict)  # re-asks and runaways, in the figures above
    worst_case: dict[str, Any] = field(default_factory=dict)  # every answer at max_tokens, re-asked
    # counted while walking the rows, turned into tokens by :func:`finish`
    _counted_prompt: int = field(default=0, repr=False)
    _counted_cached: int = field(default=0, repr=False)
    _counted_rows: int = field(default=0, repr=False)  # the rows' own (unpacked) first prompts
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
    """State carried across shards: the previous prompt (for the shared prefix), the calibration
    pairs and the answers to learn the allowance from, read from the journal; the run's limits."""

    previous: Mapping[str, Any] | None = None
    pairs: list[tuple[int, int, int]] = field(default_factory=list)
    observed: list[Observed] = field(default_factory=list)
    packed: bool = False
    history_packed: bool = False  # a journal answer to these rows came from a packed request
    history_owed: bool = False  # a journal answer to these rows is still owed a re-ask
    max_tokens: int | None = None  # None: the task's, else the settings' default
    max_reasks: int = DEFAULT_MAX_REASKS
    elsewhere: list[Past] = field(default_factory=list)  # the task's newest answers to other rows
    elsewhere_completions: list[int] = field(default_factory=list)  # of which real, ok, one request each
    elsewhere_packed: int = 0  # of them, shares of a packed request's bill (left out of ``elsewhere``)

    @property
    def elsewhere_mostly_packed(self) -> bool:
        """At least half of the other rows' answers were packed: those asked alone are mostly the packs'
        failures, so they teach no allowance. Fewer: the packed shares are left out, the rest taught."""
        return 2 * self.elsewhere_packed >= self.elsewhere_packed + len(self.elsewhere) > 0


def add_rows(estimate: Estimate, walk: EstimateWalk, task: TaskSpec, rows: Sequence[Mapping[str, Any]],
             bodies: Mapping[str, Mapping[str, Any]], hits: Mapping[str, Any], real: Mapping[str, Any],
             sent: Sequence[Mapping[str, Any]] | None = None) -> None:
    """Add one shard: ``bodies`` by request key (the rows that need a request), ``hits`` the journal's
    final answers a run would reuse (from the endpoint the run will use: they teach the allowance),
    ``real`` the answers a real endpoint gave to these requests (objects with ``attempts``,
    ``reasks``, ``prompt_tokens``, ``completion_tokens``, ``request_id``); ``sent``: the bodies a
    packing task sends for the rows not in the journal (:func:`packed_bodies`)."""
    estimate.rows += len(rows)
    estimate.skipped += sum(not needs_request(task, row) for row in rows)
    walk.packed = walk.packed or sent is not None
    todo = []
    for key, body in bodies.items():
        counted = count_prompt_tokens(body["messages"], body.get("tools"))
        answer = real.get(key)
        if answer is not None and answer.attempts == 1 and answer.reasks == 0:
            walk.pairs.append((counted, answer.prompt_tokens, answer.completion_tokens))
        if key in hits:
            estimate.from_journal += 1
            _observe(walk, counted, hits[key])
            continue
        estimate.requests += 1
        estimate._counted_rows += counted
        todo.append(body)
    for body in todo if sent is None else sent:
        estimate._sent += 1
        estimate._counted_prompt += count_prompt_tokens(body["messages"], body.get("tools"))
        estimate._counted_cached += shared_prefix_tokens(walk.previous, body)
        walk.previous = body
    if sent is not None:
        estimate.requests_after_packing = estimate._sent


def _observe(walk: EstimateWalk, counted: int, entry: Any) -> None:
    """Keep a journaled answer to learn the allowance from: one this row's own requests paid and that
    was paid at all. A share of a packed request's bill marks the history as packed: the rows of
    such a run that were asked alone are its pack's failures, so nothing is learnt from them."""
    if is_packed_request_id(entry.request_id):
        walk.history_packed = True  # then the rows asked alone are the pack's failures: learn nothing
    elif entry.prompt_tokens > 0:
        walk.observed.append(Observed(counted, entry.prompt_tokens, entry.completion_tokens, entry.reasks))


def learn_elsewhere(walk: EstimateWalk, answers: Iterable[Any], *, calibrates: bool) -> None:
    """Keep the journal's newest answers to other rows of the task (objects with ``status``, ``owed``,
    ``attempts``, ``reasks``, ``prompt_tokens``, ``completion_tokens``, ``request_id``), from the
    kind of endpoint the run will use, to learn the allowance from; when they are real
    (``calibrates``), those ok at one request also teach the completion tokens per answer, and the
    prompt scale where the run recorded its count of the prompt (``counted_prompt``). An answer
    still owed its re-ask is left out (its outcome is not known), and so is a share of a packed
    request's bill (counted: when they are half or more, nothing is learnt from the others either,
    :attr:`EstimateWalk.elsewhere_mostly_packed`)."""
    for answer in answers:
        if answer.owed or answer.prompt_tokens <= 0:
            continue
        if is_packed_request_id(answer.request_id):
            walk.elsewhere_packed += 1
            continue
        walk.elsewhere.append(Past(answer.prompt_tokens, answer.completion_tokens, answer.reasks))
        if calibrates and answer.status == "ok" and answer.attempts == 1 and answer.reasks == 0:
            if answer.counted_prompt > 0:
                walk.pairs.append((answer.counted_prompt, answer.prompt_tokens, answer.completion_tokens))
            else:  # journaled before the count was recorded: it teaches the answer size only
                walk.elsewhere_completions.append(answer.completion_tokens)


def packed_bodies(task: TaskSpec, options: RenderOptions, settings: PackSettings,
                  todo: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The bodies a packing task sends for ``todo`` ((row, unpacked body) of each request key not in
    the journal, in input order): packs as the engine groups them, a row alone unpacked."""
    groups = plan_packs([item_tokens(task, row) for row, _ in todo], settings)
    system = packed_system_message(task)
    return [dict(todo[group[0]][1]) if len(group) == 1
            else render_packed_request(task, [todo[i][0] for i in group], options, system) for group in groups]


def finish(estimate: Estimate, walk: EstimateWalk, task: TaskSpec, prices: Prices) -> Estimate:
    """Calibrate on what the journal taught, add the allowance, and price the estimate."""
    calibration = calibrate(walk.pairs, walk.elsewhere_completions)
    per_answer = calibration.completion(task)
    estimate.calibrated_on, estimate.prompt_scale_on = calibration.answers, calibration.scaled_on
    estimate.prompt_scale = scale = calibration.prompt_scale
    estimate.completion_per_request = per_answer
    rows_prompt = estimate._counted_rows * scale
    prior = prior_allowance(rows_prompt, estimate.requests, per_answer, packed=walk.packed)
    biased = walk.history_packed or walk.history_owed  # what is left of these rows' answers would mislead
    allowance = replace(learnt_allowance([] if biased else walk.observed, prior, per_answer,
                                         [] if walk.elsewhere_mostly_packed else walk.elsewhere),
                        history_packed=walk.history_packed or walk.elsewhere_mostly_packed,
                        history_owed=walk.history_owed)
    tokens = expected_tokens(estimate._counted_prompt * scale, estimate._counted_cached * scale,
                             per_answer * estimate.requests, rows_prompt, allowance)
    _price(estimate, tokens, prices)
    estimate.allowance = _allowance_dict(allowance, tokens)
    estimate.worst_case = _worst_case_dict(estimate, walk, task, rows_prompt, prices)
    return estimate


def _price(estimate: Estimate, tokens: Expected, prices: Prices) -> None:
    estimate.prompt_tokens, estimate.cached_tokens = tokens.prompt, tokens.cached
    estimate.completion_tokens = tokens.completion
    estimate.price_cny_per_mtok, estimate.price_cached_cny_per_mtok = prices.online, prices.cached
    estimate.cost_cny = prices.online_cny(tokens.prompt, tokens.completion)
    estimate.cost_cny_cached = prices.cached_cny(tokens.prompt, tokens.cached, tokens.completion)
    estimate.cost_cny_batch = prices.batch_cny(tokens.prompt, tokens.completion)


def _allowance_dict(allowance: Allowance, tokens: Expected) -> dict[str, Any]:
    return {"prompt_tokens": tokens.extra_prompt, "cached_tokens": tokens.extra_cached,
            "completion_tokens": tokens.extra_completion,
            "reasks_per_request": round(allowance.reasks_per_request, 4),
            "learnt_from": allowance.learnt_from, "learnt_from_other_rows": allowance.from_history,
            "source": allowance.source()}


def _worst_case_dict(estimate: Estimate, walk: EstimateWalk, task: TaskSpec, rows_prompt: float,
                     prices: Prices) -> dict[str, Any]:
    max_tokens = walk.max_tokens or task.max_tokens or DEFAULT_MAX_TOKENS
    tokens = worst_case_tokens(estimate._counted_prompt * estimate.prompt_scale, estimate._sent, rows_prompt,
                               estimate.requests, max_tokens, walk.max_reasks, packed=walk.packed)
    return {"tokens": tokens, "cost_cny": round(prices.online_cny(tokens, 0), 6), "max_tokens": max_tokens,
            "max_reasks": walk.max_reasks}


def estimate_check(schema: Mapping[str, Any], rule_prompt_tokens: int, first_answers: int,
                   actual_prompt: int, actual_completion: int) -> dict[str, Any]:
    """For a run's summary: what an estimate made without journal history would have said about
    the requests it answered (their prompts by the rule of thumb, answers guessed from the schema,
    the prior allowance for re-asks) against the usage the endpoint reported (re-asks included),
    as a signed share of actual."""
    answer = skeleton_answer_tokens(schema)
    allowance = prior_allowance(rule_prompt_tokens, first_answers, answer)
    tokens = expected_tokens(rule_prompt_tokens, 0, answer * first_answers, rule_prompt_tokens, allowance)
    predicted = tokens.prompt + tokens.completion
    actual = actual_prompt + actual_completion
    return {
        "requests": first_answers,
        "estimated_tokens": predicted,
        "actual_tokens": actual,
        "error": round((predicted - actual) / actual, 4) if actual else None,
    }
