"""The two deployments, defined in code (``glm-extract serve``); prefect.yaml mirrors them for work pools.

- ``nightly-ticket-qa``: ticket QA every day at 02:00 Asia/Shanghai over yesterday's partition.
- ``financial-report-extraction``: on demand from the UI (Deployments → Run → Custom run).

Both run the flow ``extract-documents`` with an :class:`~flows.params.ExtractParams` form whose
values the server checks against its JSON Schema before a run is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from flows.extract import extract_documents

FLOW_NAME = "extract-documents"
NIGHTLY = "nightly-ticket-qa"
ON_DEMAND = "financial-report-extraction"
NIGHTLY_CRON = "0 2 * * *"
NIGHTLY_TZ = "Asia/Shanghai"
NIGHTLY_RUNS_AT_ONCE = 1  # a late nightly queues behind the previous one
ON_DEMAND_RUNS_AT_ONCE = 4


@dataclass(frozen=True)
class DeploymentPaths:
    """Where each deployment reads and writes by default (relative to the serving directory)."""

    nightly_input: str = "data/tickets/dt={partition_date}/*.parquet"
    nightly_output: str = "out/ticket_qa/{partition_date}.parquet"
    report_input: str = "data/sample/financial_reports.parquet"
    report_output: str = "out/financial_report/{partition_date}.parquet"


def nightly_parameters(paths: DeploymentPaths) -> dict[str, Any]:
    """Default parameters of the nightly run (partition date: yesterday, resolved at run time)."""
    return {"params": {"task": "ticket_qa", "input": paths.nightly_input, "output": paths.nightly_output,
                       "priority": "batch"}}


def report_parameters(paths: DeploymentPaths) -> dict[str, Any]:
    """Default parameters of the on-demand financial report run (the UI form starts from these)."""
    return {"params": {"task": "financial_report", "input": paths.report_input, "output": paths.report_output}}


def build_deployments(paths: DeploymentPaths | None = None) -> list[RunnerDeployment]:
    """Both deployments, ready for ``prefect.serve``."""
    paths = paths or DeploymentPaths()
    nightly = extract_documents.to_deployment(
        name=NIGHTLY, schedule=Cron(NIGHTLY_CRON, timezone=NIGHTLY_TZ), parameters=nightly_parameters(paths),
        concurrency_limit=NIGHTLY_RUNS_AT_ONCE, tags=["glm-extract", "ticket_qa", "nightly"],
        description="Ticket QA over yesterday's partition (Asia/Shanghai), every night at 02:00.",
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    on_demand = extract_documents.to_deployment(
        name=ON_DEMAND, parameters=report_parameters(paths), concurrency_limit=ON_DEMAND_RUNS_AT_ONCE,
        tags=["glm-extract", "financial_report", "on-demand"],
        description="Financial report extraction on demand: Run → Custom run, fill in the form.",
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    return [_runner_deployment(nightly), _runner_deployment(on_demand)]


def _runner_deployment(value: object) -> RunnerDeployment:
    # ``to_deployment`` is async-dispatched; from sync code it returns the deployment itself.
    assert isinstance(value, RunnerDeployment), "call build_deployments from synchronous code"
    return value
