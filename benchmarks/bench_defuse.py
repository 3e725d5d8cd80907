"""Frame-tag defusing (pipeline/prompts.py ``defuse_frame_tags``): what it costs per template value.

    .venv/bin/python -m benchmarks.bench_defuse
    .venv/bin/python -m benchmarks.bench_defuse --hostile-chars 100000

Every template value of every row goes through it, so it is on the rendering hot path. Printed:
microseconds per value for the sample tickets' texts as they are (no bracket: the fast path), with
an ASCII ``a < b`` appended (the ASCII pattern runs), and with a fullwidth ``＜`` appended (Chinese
"less than": the fullwidth pattern runs), and the milliseconds the first value with a bracket pays
once per process (the tag letters' classes are built and that bracket's pattern compiled); then
milliseconds for one hostile value of ``--hostile-chars`` characters of each kind (a bracket and a
long run of spaces, zero-width characters or accents, many brackets of several kinds, many spaced,
look-alike or unfinished tags, a spaced tag and a long attribute name): each must stay linear in the
value's length (compare two ``--hostile-chars`` ten times apart).
"""

from __future__ import annotations

import argparse
import functools
import time
import timeit
from collections.abc import Callable

import polars as pl

from benchmarks.common import REPO, result_line
from pipeline.prompts import defuse_frame_tags


def per_value_us(values: list[str], repeat: int = 5) -> float:
    """Best-of-``repeat`` microseconds to defuse one of ``values``."""
    best = min(timeit.repeat(lambda: [defuse_frame_tags(v) for v in values], number=1, repeat=repeat))
    return best / len(values) * 1e6


def once_ms(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1e3


def hostile(chars: int) -> dict[str, str]:
    """Values built to make a backtracking pattern slow, ``chars`` characters each."""
    return {
        "lt_then_spaces": "<" + " " * chars,
        "lt_then_zwsp": "<" + "\u200b" * chars,
        "many_lt": "<" * chars,
        "many_fullwidth_lt": "\uff1c" * chars,
        "many_spaced_item": "< item" * (chars // 6),
        "many_spaced_close": "< /item x" * (chars // 9),
        "lt_slash_then_spaces": "</" + " " * chars,
        "lt_then_accents": "<" + "\u0301" * chars,
        "many_angle_quotes": "\u2039\u3008\u27e8" * (chars // 3),
        "many_lookalike_close": "</\u0456\u0442\u0435\u043c x" * (chars // 8),
        "many_unfinished_open": "< item id" * (chars // 9),
        "spaced_open_long_attr": "< item " + "a" * chars,
        "spaced_open_no_gt": "< document " + "x" * chars,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hostile-chars", type=int, default=100_000)
    args = parser.parse_args()
    texts = [t for t in pl.read_parquet(REPO / "data" / "sample" / "tickets.parquet")["text"].to_list() if t]
    first_ms = once_ms(lambda: defuse_frame_tags("a < b"))
    print(result_line("defuse_per_value_us", {
        "plain": f"{per_value_us(texts):.3f}",
        "ascii_lt": f"{per_value_us([t + ' a < b <b>x</b>' for t in texts]):.3f}",
        "fullwidth_lt": f"{per_value_us([t + ' 价格＜100元' for t in texts]):.3f}",
        "values": len(texts),
        "first_bracket_ms": f"{first_ms:.1f}",
    }))
    print(result_line("defuse_hostile_ms", {name: f"{once_ms(functools.partial(defuse_frame_tags, value)):.1f}"
                                            for name, value in hostile(args.hostile_chars).items()}))


if __name__ == "__main__":
    main()
