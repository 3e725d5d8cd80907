"""The estimate's allowance and worst case, by hand: what a re-asked answer was billed beyond its
first request is the allowance; the prior weighs as PRIOR_WEIGHT answers; the worst case is every
answer at max_tokens, re-asked max_reasks times."""

from __future__ import annotations

import pytest

from pipeline.estimate import (
    PRIOR_WEIGHT,
    REASK_PRIOR,
    Observed,
    expected_tokens,
    follow_up_tokens,
    learnt_allowance,
    prior_allowance,
    worst_case_tokens,
)


def test_a_reasked_answer_teaches_what_it_paid_beyond_its_first_request() -> None:
    observed = [Observed(100, 100, 20, 0), Observed(100, 100, 20, 0), Observed(100, 250, 45, 1)]
    prior = prior_allowance(300, 3, 20)
    learnt = learnt_allowance(observed, prior, answer=99)  # the single answers say 20, not 99

    def blended(seen: float, assumed: float) -> float:
        return (3 * seen + PRIOR_WEIGHT * assumed) / (3 + PRIOR_WEIGHT)

    assert learnt.learnt_from == 3
    assert learnt.prompt_share == pytest.approx(blended(150 / 300, prior.prompt_share))
    assert learnt.completion_share == pytest.approx(blended(25 / 60, REASK_PRIOR))
    assert learnt.reasks_per_request == pytest.approx(blended(1 / 3, REASK_PRIOR))


def test_the_prior_is_a_reask_of_the_prompt_with_the_bad_answer_and_a_second_answer() -> None:
    prior = prior_allowance(1000, 2, 50)
    tokens = expected_tokens(1000, 0, 100, 1000, prior)
    assert tokens.extra_prompt == round(REASK_PRIOR * (1000 + 2 * (50 + follow_up_tokens())))
    assert tokens.extra_completion == round(REASK_PRIOR * 100)
    assert tokens.extra_cached == round(REASK_PRIOR * 1000)  # the re-ask repeats its first prompt
    assert (tokens.prompt, tokens.completion) == (1000 + tokens.extra_prompt, 100 + tokens.extra_completion)


def test_the_worst_case_is_every_answer_at_max_tokens_reasked_max_reasks_times() -> None:
    f = follow_up_tokens()
    # one row: prompts 100, 100+(10+f), 100+2(10+f); three answers of 10
    assert worst_case_tokens(100, 1, 100, 1, 10, 2, packed=False) == 300 + 3 * (10 + f) + 30
    # packed: the pack (prompt 150, 2 rows) answers 10, then each row alone as above with no re-ask
    assert worst_case_tokens(150, 1, 200, 2, 10, 0, packed=True) == 150 + 10 + 200 + 2 * 10
