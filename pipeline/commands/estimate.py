"""``glm-extract estimate``: what a run over INPUT would send and cost, sending and writing nothing.

The IO edge of :mod:`pipeline.estimate`: it checks the input like a run does, reads it shard by
shard, renders every row exactly as the engine does (so request keys match the journal's), looks
the keys up in the journal, and hands the counts to the pure estimator. The Prefect flow's
estimate-only run uses :func:`estimate_shards` too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import jsonschema_rs
import orjson
import typer
from rich.table import Table

from pipeline import io
from pipeline.commands.console import ColumnOption, MaxTokensOption, err, fail, out, settings_from
from pipeline.endpoints import needs_emulator, online_target
from pipeline.errors import GlmExtractError
from pipeline.estimate import (
    HISTORY_ANSWERS,
    Estimate,
    EstimateWalk,
    Prices,
    add_rows,
    finish,
    learn_elsewhere,
    needs_request,
    packed_bodies,
)
from pipeline.journal import JournalEntry, PastAnswer, endpoint_kind, is_reask_due
from pipeline.journal_reader import JournalReader
from pipeline.keys import SYNTHETIC_ENDPOINT, request_key
from pipeline.packing import settings_for
from pipeline.prompts import RenderOptions, render_request, system_message
from pipeline.runner import check_task_input
from pipeline.settings import Settings
from pipeline.tables import prompt_rows
from pipeline.tasks import TaskSpec, bind_columns, load_task, parse_column_mapping
from pipeline.validate import build_reask, compile_validator, owed_verdict


def register(app: typer.Typer) -> None:
    """Add the ``estimate`` command to ``app``."""
    app.command("estimate")(estimate)


def prices_for(settings: Settings) -> Prices:
    return Prices(online=settings.price_cny_per_mtok, cached=settings.price_cached_cny_per_mtok)


def estimate_shards(task: TaskSpec, input_label: str, settings: Settings, shards: Sequence[io.ShardSpec]) -> Estimate:
    """Render every row shard by shard; count requests, journal hits and tokens; price them.

    A run without a key or endpoint answers from the emulator (so does an endpoint that says it is
    one), whose answers are journaled apart from real ones: the hits are looked up under the key
    such a run would use, while only real answers calibrate the token counts. The hits (from the
    endpoint the run will use) teach the allowance for re-asks and runaway answers, and so do the
    journal's newest answers to other rows of the task by the same model from the same kind of
    endpoint (:data:`~pipeline.estimate.HISTORY_ANSWERS`; real ones also teach the answer size).
    """
    estimate = Estimate(task.name, input_label, shards=len(shards))
    endpoint_id = SYNTHETIC_ENDPOINT if needs_emulator(settings) or online_target(settings).synthetic else ""
    options = RenderOptions(model=settings.model, mode=settings.mode,
                            max_tokens=settings.max_tokens_for(task.max_tokens))
    walk = EstimateWalk(max_tokens=options.max_tokens, max_reasks=settings.max_reasks)
    system = system_message(task, settings.mode)
    pack = settings_for(task, options)
    validator = compile_validator(task.schema)
    journal = JournalReader.open(settings.journal_path)  # read only: None when it holds no history
    try:
        elsewhere = _newest_answers(journal, task, settings, endpoint_id)
        for spec in shards:
            rows = prompt_rows(io.read_shard(spec), task)
            by_key: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}  # key → its first row and body
            for row in rows:
                if needs_request(task, row):
                    body = render_request(task, row, options, system)
                    by_key.setdefault(request_key(body, endpoint_id), (row, body))
            keyed = {key: body for key, (_, body) in by_key.items()}
            found = journal.lookup(keyed) if journal is not None else {}
            for key in found:  # an answer to these rows is learnt from as one (or left out when owed)
                elsewhere.pop(key, None)
            owed = {key for key, entry in found.items() if is_reask_due(entry)}  # a run sends their re-asks
            hits = {key: entry for key, entry in found.items() if key not in owed}
            walk.history_owed = walk.history_owed or bool(owed)
            keyed |= {key: owed_request(keyed[key], found[key], validator) for key in owed}
            real = _real_answers(journal, keyed, endpoint_id, hits)
            todo = [by_key[key] for key in keyed if key not in hits and key not in owed]
            alone = [keyed[key] for key in keyed if key in owed]  # their re-asks, sent alone, never packed
            sent = packed_bodies(task, options, pack, todo) + alone if pack is not None else None
            add_rows(estimate, walk, task, rows, keyed, hits, real, sent)
        learn_elsewhere(walk, elsewhere.values(), calibrates=not endpoint_id)
    finally:
        if journal is not None:
            journal.close()
    return finish(estimate, walk, task, prices_for(settings))


def _newest_answers(journal: JournalReader | None, task: TaskSpec, settings: Settings,
                    endpoint_id: str) -> dict[str, PastAnswer]:
    """The journal's newest answers of the task by the run's model from the run's kind of endpoint, by key."""
    if journal is None:
        return {}
    newest = journal.recent(task.name, settings.model, endpoint_kind(endpoint_id), HISTORY_ANSWERS)
    return {answer.key: answer for answer in newest}


def owed_request(body: dict[str, Any], entry: JournalEntry, validator: jsonschema_rs.Validator) -> dict[str, Any]:
    """What a run sends for a row owed its re-ask: the re-ask of its stored answer (the request as
    rendered, then that answer and the validator's errors), or, for a pack's share owed its request
    alone (no answer of its own), that request."""
    if entry.request_id is None or entry.answer is None:
        return body
    return build_reask(body, entry.answer, owed_verdict(entry.answer, entry.finish_reason, validator))


def _real_answers(journal: JournalReader | None, keyed: dict[str, dict[str, Any]], endpoint_id: str,
                  hits: dict[str, JournalEntry]) -> dict[str, JournalEntry]:
    """The journal's answers from a real endpoint to these requests (by the run's key), ok ones only."""
    if journal is None:
        return {}
    if endpoint_id:
        real_key = {request_key(body): key for key, body in keyed.items()}
        hits = {real_key[k]: entry for k, entry in journal.lookup(real_key).items()}
    return {key: entry for key, entry in hits.items() if entry.status == "ok"}


def estimate_input(task_name: str, input_spec: str, settings: Settings, columns: dict[str, str]) -> Estimate:
    """Check INPUT as a run would (one-line errors), then estimate it."""
    task = bind_columns(load_task(task_name, settings.schemas_dir), columns)
    info = check_task_input(task, io.resolve_inputs(input_spec))
    return estimate_shards(task, input_spec, settings, io.plan_shards(info, settings.shard_size))


def estimate(
    task: Annotated[str, typer.Option(help="task name (see `glm-extract tasks`)")],
    input: Annotated[str, typer.Option("--input", "-i", help="Parquet file, glob or folder")],
    column: ColumnOption = None,
    journal: Annotated[Path | None, typer.Option(help="SQLite journal of paid answers (read only)")] = None,
    model: Annotated[str | None, typer.Option(help="GLM model id; part of every request key")] = None,
    mode: Annotated[str | None, typer.Option(help="json or tools, as the run would use")] = None,
    base_url: Annotated[str | None, typer.Option(help="the endpoint the run would use (real answers)")] = None,
    schemas_dir: Annotated[Path | None, typer.Option(help="folder of your own tasks")] = None,
    max_tokens: MaxTokensOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the estimate as one JSON object")] = False,
) -> None:
    """Rows, requests still to pay (after journal hits), tokens and CNY online / with the cache /
    batch, for a run over INPUT, re-asks and runaway answers included (learnt from the journal, else
    a stated prior), and the worst case. Nothing is sent, nothing is written."""
    try:
        settings = settings_from(journal_path=journal, model=model, mode=mode, base_url=base_url,
                                 schemas_dir=schemas_dir, max_tokens=max_tokens)
        found = estimate_input(task, input, settings, parse_column_mapping(column or []))
    except GlmExtractError as exc:
        raise fail(exc) from None
    note = io.skipped_note(input)  # on stderr: --json keeps stdout one object
    if note is not None:
        err.print(note, markup=False, highlight=False, soft_wrap=True)
    if as_json:
        out.print(orjson.dumps(found.as_dict()).decode(), highlight=False, soft_wrap=True, markup=False)
        return
    out.print(render(found.as_dict()))


def render(data: dict[str, Any]) -> Table:
    """The estimate as a table a person reads."""
    table = Table(title=f"estimate · {data['task']} · {data['input']} (nothing sent, nothing written)",
                  show_header=False)
    scaled = (f"prompt x{data['prompt_scale']} (on {data['prompt_scale_on']} answers whose prompt we counted)"
              if data["prompt_scale_on"] else "prompt x1 (no real answers to compare our count with)")
    calibration = (f"on {data['calibrated_on']} real answers in the journal: {scaled}, "
                   f"{data['completion_per_request']} completion tokens per answer" if data["calibrated_on"]
                   else f"none (no real answers in the journal); {data['completion_per_request']} completion "
                        "tokens per answer guessed from the schema")
    rows = [
        ("rows", f"{data['rows']} in {data['shards']} shard(s), {data['skipped']} not sent (blank or too long)"),
        ("requests", f"{data['requests']} to pay ({data['from_journal']} answered in the journal)"),
        ("after packing", data["requests_after_packing"]),
        ("after chunking", data["requests_after_chunking"]),
        ("tokens", f"prompt ≈ {data['prompt_tokens']} (cached ≈ {data['cached_tokens']}), "
                   f"completion ≈ {data['completion_tokens']}"),
        ("CNY online", f"{data['cost_cny']:.4f} at {data['price_cny_per_mtok']} per million tokens"),
        ("CNY with cache", f"{data['cost_cny_cached']:.4f} (cached tokens at {data['price_cached_cny_per_mtok']}, "
                           "unconfirmed)"),
        ("CNY batch", f"{data['cost_cny_batch']:.4f} (half the online price)"),
        ("calibration", calibration),
    ]
    for name, value in rows + _beyond_first_answers(data):
        table.add_row(name, str(value))
    return table


def _beyond_first_answers(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The allowance the figures above include, and the worst case they do not."""
    allowance, worst = data["allowance"], data["worst_case"]
    return [
        ("allowance", f"prompt +{allowance['prompt_tokens']}, completion +{allowance['completion_tokens']} "
                      f"(in the tokens above) for {allowance['reasks_per_request']:.3f} re-asks per request and "
                      f"runaway answers; {allowance['source']}"),
        ("worst case", f"{worst['cost_cny']:.4f} CNY online, {worst['tokens']} tokens, if every answer ran to "
                       f"max_tokens ({worst['max_tokens']}) and were re-asked {worst['max_reasks']} times"),
    ]
