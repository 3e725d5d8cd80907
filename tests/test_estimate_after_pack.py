"""An estimate must not learn its re-ask allowance from a journal a packing run filled: the rows a
pack answered are shares of the pack's bill (left out), so what is left to learn from are the rows
the pack failed and asked again alone, each counted as re-asked: the learnt rate would be the rate
among failures (near 1), not the run's."""

from __future__ import annotations

import json
from pathlib import Path

from emulator import serve_in_thread
from pipeline.estimate import Allowance, expected_tokens
from tests.packing_support import packing_schemas
from tests.test_estimate_realistic import FAULTY, cli, emulator, tickets

PACKED = "pack_tokens = 3000\npack_max = 10"


def test_a_journal_filled_by_packed_requests_teaches_no_allowance(tmp_path: Path) -> None:
    first = tickets(tmp_path / "in")
    journal = tmp_path / "journal.sqlite"
    packed, plain = packing_schemas(tmp_path, PACKED), packing_schemas(tmp_path, "")
    with serve_in_thread(emulator(FAULTY)) as emu:
        done = cli(tmp_path, "run", "--task", "ticket_qa", "--input", str(first), "--output",
                   str(tmp_path / "day1.parquet"), "-q", "--base-url", emu.base_url, "--journal", str(journal),
                   "--schemas-dir", str(packed))
        assert done.returncode == 0, done.stderr
        found = cli(tmp_path, "estimate", "--task", "ticket_qa", "--input", str(tmp_path / "in"), "--json",
                    "--base-url", emu.base_url, "--journal", str(journal), "--schemas-dir", str(plain))
    assert found.returncode == 0, found.stderr
    estimate = json.loads(found.stdout)
    assert estimate["from_journal"] > 0 and estimate["requests"] > 0
    allowance = estimate["allowance"]
    assert allowance["learnt_from"] == 0, allowance
    assert "packed" in allowance["source"], allowance["source"]


def test_the_cache_never_serves_more_of_the_allowance_than_its_prompt() -> None:
    # many re-asks of short prompts: a re-ask's cached part is at most the prompt it repeats
    allowance = Allowance(reasks_per_request=0.6, prompt_share=0.1, cached_share=0.6, completion_share=0.2)
    tokens = expected_tokens(10_000, 5_000, 2_000, 10_000, allowance)
    assert tokens.extra_cached <= tokens.extra_prompt == 1_000
    assert tokens.cached <= tokens.prompt
