"""Small Parquet inputs for the flow tests."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tests.conftest import SAMPLE

TICKETS = SAMPLE / "tickets.parquet"


def write_tickets(path: Path, start: int = 0, stop: int | None = None) -> Path:
    """Rows ``start:stop`` of the sample tickets as a Parquet file."""
    frame = pl.read_parquet(TICKETS)
    frame.slice(start, (stop if stop is not None else frame.height) - start).write_parquet(path)
    return path


def write_mini_tickets(path: Path, texts: list[str | None]) -> Path:
    """A tiny ticket_qa input (ticket_id, channel, text)."""
    pl.DataFrame({"ticket_id": [f"m-{i}" for i in range(len(texts))], "channel": ["chat"] * len(texts),
                  "text": texts}, schema={"ticket_id": pl.String, "channel": pl.String, "text": pl.String},
                 ).write_parquet(path)
    return path
