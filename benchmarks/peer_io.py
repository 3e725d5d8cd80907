"""The command line and input both peer scripts share (``peer_openai.py``, ``peer_curator.py``).

Stdlib only: the peers run by path from a separate venv that does not hold the project, so this
module sits beside them and is imported as a sibling.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def read_args() -> tuple[argparse.Namespace, list[dict[str, Any]]]:
    """The parsed arguments and the rows (``{"id": …, "body": {…}}``) of the ``--requests`` JSONL."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.requests.read_text().splitlines() if line]
    return args, rows
