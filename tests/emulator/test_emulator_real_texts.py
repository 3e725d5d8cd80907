"""Item: the emulator never crashes on real text; in the clean profile every answer is schema-valid.

Runs the answer builder over every text of the bundled sample and, when the folder exists on
this machine, of the larger real-text sets beside the repository (users do not have them).
"""

from __future__ import annotations

from pathlib import Path

import jsonschema_rs
import orjson
import polars as pl
import pytest

from emulator.answers import answer_request
from emulator.docfacts import DocFacts, parse_number
from pipeline.prompts import RenderOptions, render_request, system_message
from pipeline.tasks import TaskSpec, load_task
from tests.conftest import REAL_DATA

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = {"tickets.parquet": "ticket_qa", "financial_reports.parquet": "financial_report"}
SHARED = REAL_DATA or ROOT / "no-real-data"
SHARED_FILES = {"tickets_real_en.parquet": "ticket_qa", "financial_reports_real.parquet": "financial_report"}
CRASHERS = ["更新到2.2.1以后还是闪退", "v1.2.3.4 crashes; build 10.0.19045.3803", "1.2.3 万元 4.5.6%",
            "价格 1,234,5.6.7 元", "..1.. 2..3 ,,4,,", "12.34.56.78 同比增长 3.4.5%"]


def _check_texts(task: TaskSpec, texts: list[str]) -> None:
    options = RenderOptions(model="glm-4-air-250414", mode="json", max_tokens=4096)
    system = system_message(task, "json")
    validator = jsonschema_rs.validator_for(task.schema)
    row_base = {column: "x" for column in task.template_columns}
    for text in texts:
        body = render_request(task, {**row_base, task.text_column: text}, options, system)
        answer = answer_request(body)
        errors = [e.message for e in validator.iter_errors(orjson.loads(answer.text))]
        assert not errors, (text[:80], errors)


@pytest.mark.parametrize("text", CRASHERS)
def test_dotted_version_strings_do_not_crash_the_number_parser(text: str) -> None:
    facts = DocFacts(text)
    facts.find_amount("revenue")
    facts.find_percent(growth=True)
    _check_texts(load_task("ticket_qa", ROOT / "schemas"), [text])
    _check_texts(load_task("financial_report", ROOT / "schemas"), [text])


def test_parse_number_reads_the_leading_number_of_a_dotted_version() -> None:
    assert parse_number("2.2.1") == 2.2
    assert parse_number("1,234.5") == 1234.5


@pytest.mark.parametrize(("name", "task_name"), sorted(SAMPLES.items()))
def test_every_sample_text_gets_a_schema_valid_answer(name: str, task_name: str) -> None:
    task = load_task(task_name, ROOT / "schemas")
    texts = pl.read_parquet(ROOT / "data" / "sample" / name).get_column(task.text_column).drop_nulls().to_list()
    assert texts
    _check_texts(task, texts)


@pytest.mark.parametrize(("name", "task_name"), sorted(SHARED_FILES.items()))
def test_every_shared_text_gets_a_schema_valid_answer(name: str, task_name: str) -> None:
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"{path} is not on this machine (only the team's machines have it)")
    task = load_task(task_name, ROOT / "schemas")
    frame = pl.read_parquet(path)
    column = task.text_column if task.text_column in frame.columns else "text"
    texts = frame.get_column(column).drop_nulls().to_list()
    assert texts
    _check_texts(task, texts)
