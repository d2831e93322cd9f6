"""The benchmark harness's options (pure logic)."""

from __future__ import annotations

import pytest

from bench.harness import max_rates, parse_args


def test_one_max_rate_is_every_domain_s_and_per_domain_rates_are_each_their_own() -> None:
    assert max_rates("15610") == {None: 15610.0}
    assert max_rates("transactions=15610,emails=6983.5") == {
        "transactions": 15610.0,
        "emails": 6983.5,
    }


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("payments=100", "unknown domain 'payments'"),
        ("emails=1,emails=2", "one rate per domain"),
        ("100,emails=2", "one rate per domain"),
        ("emails=2,100", "one rate per domain"),
        ("emails=0", "positive number"),
        ("-5", "positive number"),
        ("fast", "positive number"),
        ("nan", "positive number"),
        ("emails=", "positive number"),
    ],
)
def test_a_wrong_max_rate_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        max_rates(text)


def test_the_harness_refuses_a_wrong_max_rate_naming_the_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--sections", "swap", "--max-rate", "emails=fast"])
    assert "--max-rate: a rate is a positive number" in capsys.readouterr().err


def test_the_parsed_max_rate_is_per_domain() -> None:
    args = parse_args(["--sections", "swap", "--max-rate", "transactions=15610,emails=6983"])
    assert args.max_rate == {"transactions": 15610.0, "emails": 6983.0}


def test_retrain_sizes_are_parsed_once_and_quick_uses_the_smallest_that_fit() -> None:
    assert parse_args(["--retrain-sizes", "10000,100000"]).retrain_sizes == [10_000, 100_000]
    assert parse_args(["--quick"]).retrain_sizes == [10_000, 20_000]


def test_the_half_load_runs_three_times_by_default_once_when_quick_and_never_zero(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse_args([]).half_loads == 3
    assert parse_args(["--half-loads", "5"]).half_loads == 5
    assert parse_args(["--quick", "--half-loads", "5"]).half_loads == 1
    with pytest.raises(SystemExit):
        parse_args(["--half-loads", "0"])
    assert "--half-loads: at least 1, not 0" in capsys.readouterr().err


def test_the_low_rates_are_positive_numbers_and_a_wrong_one_is_named(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse_args([]).low_rates == [500.0, 2000.0]
    assert parse_args(["--low-rates", "100,250.5"]).low_rates == [100.0, 250.5]
    for wrong in ("0", "100,slow", "100,", "inf"):
        with pytest.raises(SystemExit):
            parse_args(["--low-rates", wrong])
        assert "--low-rates: a rate is a positive number" in capsys.readouterr().err
