"""A packed answer that names an item twice (a model looping in a long JSON object) must never give
one row another row's record: JSON parsers keep the last value of a repeated key, which here is
another document's. The emulator's ``duplicate_key`` fault repeats the first key of an answer at its
end with the last key's value, so a pack of N answers ``d1`` a second time with ``dN``'s record."""

from __future__ import annotations

from pathlib import Path

import jsonschema_rs
import polars as pl

from emulator import EmulatorConfig, serve_in_thread
from emulator.faults import break_answer
from pipeline.packing import split_answer
from pipeline.validate import Reask, Valid
from tests.test_packing_run import FIELDS, PACKED, UNPACKED, _run


def test_a_record_named_twice_is_asked_again_alone_never_taken_from_another_item(tmp_path: Path) -> None:
    with serve_in_thread(EmulatorConfig()) as emu:
        _, truth = _run(emu.base_url, tmp_path, "truth", packing=UNPACKED)
    with serve_in_thread(EmulatorConfig(faults={"duplicate_key": 0.5}, seed=11)) as emu:
        summary, rows = _run(emu.base_url, tmp_path, "dup", packing=PACKED)
    ok = rows.filter(pl.col("_status") == "ok")
    assert summary["requests"]["reasks"] > 0  # the fault did hit answers
    assert ok.height >= rows.filter(pl.col("_status") != "skipped").height // 2
    # every row taken is the row's own answer: the one an unpacked clean run gets
    expected = truth.filter(pl.col("_record_id").is_in(ok["_record_id"].to_list()))
    assert ok.select("_record_id", *FIELDS).equals(expected.select("_record_id", *FIELDS))


def test_split_answer_refuses_every_label_named_more_than_once() -> None:
    records = {f"d{i}": {"n": i} for i in (1, 2, 3)}
    text = break_answer("duplicate_key", '{"d1":{"n":1},"d2":{"n":2},"d3":{"n":3}}', records, None).text
    assert text.count('"d1"') == 2
    verdicts = split_answer(text, "stop", 3, jsonschema_rs.validator_for({"type": "object"}))
    assert isinstance(verdicts[0], Reask) and "twice" in " ".join(verdicts[0].errors)
    assert [v.data for v in verdicts[1:] if isinstance(v, Valid)] == [{"n": 2}, {"n": 3}]
    # fenced or wrapped in prose, the same
    fenced = split_answer(f"```json\n{text}\n```", "stop", 3, jsonschema_rs.validator_for({"type": "object"}))
    assert isinstance(fenced[0], Reask) and isinstance(fenced[1], Valid)
