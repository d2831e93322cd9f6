"""A demo with a data set missing runs the domain that has data and says how to get the other."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from inferloop.demo.plan import DemoPlan, DomainPlan
from inferloop.demo.run import Demo, DemoError
from inferloop.settings import Settings

PLAN = DemoPlan(
    run_id="t",
    out_dir=Path("unused"),
    domains=(
        DomainPlan("emails", "sms", 0.2, 0.4, rate_per_s=10, schedule="60s"),
        DomainPlan("transactions", "creditcard", 0.2, 0.4, rate_per_s=10, schedule="60s"),
    ),
)


def test_a_missing_data_set_drops_its_domain_with_directions(tmp_path: Path) -> None:
    (tmp_path / "sms_spam").symlink_to(Settings().data_dir / "sms_spam", target_is_directory=True)
    out = io.StringIO()
    demo = Demo(Settings(data_dir=tmp_path), PLAN, Console(file=out, width=300))
    demo.load_data()
    assert list(demo.runs) == ["emails"]
    told = out.getvalue()
    assert "transactions: skipped" in told
    assert "kaggle.com/datasets/mlg-ulb/creditcardfraud" in told
    assert "--data-dir" in told
    assert str(tmp_path) in told


def test_no_data_set_at_all_is_an_error_naming_the_folder(tmp_path: Path) -> None:
    demo = Demo(Settings(data_dir=tmp_path), PLAN, Console(file=io.StringIO()))
    with pytest.raises(DemoError, match=str(tmp_path)):
        demo.load_data()
