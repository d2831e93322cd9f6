"""``inferloop score`` over files: JSON Lines (gzip or not, or standard input) in,
predictions out, invalid input to the rejects file with the worker's reasons."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest

from inferloop.batch.errors import OutputError
from inferloop.batch.files import WRITE_BUFFER_BYTES, LinesReader, LinesWriter
from inferloop.domains import get_domain
from inferloop.domains.schemas import MAX_EVENT_BYTES, Prediction
from inferloop.settings import Settings
from tests.batch.helpers import json_lines, lines, ok, score, write_lines
from tests.worker.conftest import Champion
from tests.worker.factories import POISON_AMOUNT, Fitted, poisoned, tx_bytes, tx_event


def _expected_scores(fitted: Fitted, ids: list[int]) -> np.ndarray:
    spec = get_domain("transactions")
    batch = spec.validate_batch([tx_bytes(i) for i in ids])
    return np.asarray(fitted.pipeline.predict_proba(spec.to_rows(batch.events))[:, 1])


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_a_file_scored_with_the_champion_and_its_bad_lines_set_aside(
    wsettings: Settings, champion: Champion, model_v1: Fitted, tmp_path: Path, suffix: str
) -> None:
    version = champion(model_v1).version
    ids = list(range(2_500))
    missing = tx_event(90_001)
    del missing["amount"]
    values = [tx_bytes(i) for i in ids[:1_000]]
    values += [b"{not json", json.dumps(missing).encode(), b"", b"   "]
    values += [tx_bytes(i) for i in ids[1_000:]]
    values.append(json.dumps(tx_event(90_002, event_time="2024-03-01T10:00:00")).encode())
    source, out, rejects = (tmp_path / f"in{suffix}", tmp_path / f"out{suffix}",
                            tmp_path / "rejects.jsonl")  # fmt: skip
    write_lines(source, values)

    result = score(wsettings, "transactions", "--input", str(source), "--output", str(out),
                   "--rejects", str(rejects), "--json", "--chunk-size", "700")  # fmt: skip

    summary = json.loads(ok(result))
    predictions = [Prediction.model_validate_json(line) for line in lines(out)]
    assert [p.event_id for p in predictions] == [f"tx-{i}" for i in ids]
    assert {(p.model.name, p.model.version, p.domain) for p in predictions} == {
        ("transactions", version, "transactions")
    }
    scores = np.array([p.score for p in predictions])
    np.testing.assert_allclose(scores, _expected_scores(model_v1, ids), rtol=0, atol=1e-12)
    assert [p.label == "fraud" for p in predictions] == (scores >= 0.5).tolist()
    assert [(r["reason"], r["line"]) for r in json_lines(rejects)] == [
        ("not_json", 1_001), ("missing_field", 1_002), ("naive_time", 2_505)
    ]  # fmt: skip
    assert json_lines(rejects)[0]["value"] == "{not json"
    assert summary["read"] == 2_503
    assert summary["predicted"] == 2_500
    assert summary["reject_reasons"] == {"missing_field": 1, "naive_time": 1, "not_json": 1}
    assert sum(summary["labels"].values()) == 2_500
    assert summary["labels"]["fraud"] == int((scores >= 0.5).sum())
    assert summary["model"] == f"transactions@{version}"


def test_standard_input_to_standard_output(
    wsettings: Settings, champion: Champion, model_v1: Fitted
) -> None:
    champion(model_v1)
    stdin = b"\n".join(tx_bytes(i) for i in range(50)) + b"\n"

    result = score(wsettings, "transactions", "--input", "-", "--output", "-", stdin=stdin)

    out = ok(result).splitlines()
    predicted = [json.loads(line)["event_id"] for line in out if line.startswith("{")]
    assert predicted == [f"tx-{i}" for i in range(50)]


def test_a_progress_bar_and_the_summary_for_people(
    wsettings: Settings, champion: Champion, model_v1: Fitted, tmp_path: Path
) -> None:
    champion(model_v1)
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(source, [tx_bytes(i) for i in range(30)] + [b"{"])

    result = score(wsettings, "transactions", "--input", str(source), "--output", str(out),
                   "--chunk-size", "7", progress=True)  # fmt: skip

    text = ok(result)
    assert "scored 31 events with transactions@" in text
    assert "scoring" in text  # the bar (CliRunner mixes standard error in)
    assert "not_json" in text
    assert len(json_lines(out)) == 30


def test_a_named_version_is_used_and_an_unknown_one_is_one_line(
    wsettings: Settings, champion: Champion, model_v1: Fitted, tmp_path: Path
) -> None:
    version = champion(model_v1).version
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(source, [tx_bytes(1)])

    ok(score(wsettings, "transactions", "--model", f"transactions:{version}",
             "--input", str(source), "--output", str(out)))  # fmt: skip
    assert json_lines(out)[0]["model"] == {"name": "transactions", "version": version}

    result = score(wsettings, "transactions", "--model", "transactions:99",
                   "--input", str(source), "--output", str(out))  # fmt: skip
    assert result.exit_code == 1, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_predictions_topic_only_when_asked(wsettings: Settings, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    write_lines(source, [tx_bytes(1)])
    topic = wsettings.topics.prefix + "transactions.predictions"

    result = score(wsettings, "transactions", "--input", str(source), "--to-topic", topic)

    assert result.exit_code == 2
    assert "--to-predictions" in result.output


def test_a_line_longer_than_any_event_is_cut_and_the_next_one_read(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    huge = b'{"id": "' + b"x" * (3 * MAX_EVENT_BYTES) + b'"}'
    write_lines(path, [tx_bytes(1), huge, tx_bytes(2)])

    with LinesReader(str(path), chunk_size=10) as reader:
        chunks = list(reader)

    values = [v for c in chunks for v in c.values]
    assert [c.origin(i)["line"] for c in chunks for i in range(len(c.values))] == [1, 2, 3]
    assert values[0] == tx_bytes(1)
    assert values[2] == tx_bytes(2)
    assert values[1] is not None
    assert MAX_EVENT_BYTES < len(values[1]) <= MAX_EVENT_BYTES + 2
    rejects = get_domain("transactions").validate_batch(values).rejects
    assert [(r.index, r.reason) for r in rejects] == [(1, "oversize_event")]


def test_an_event_that_breaks_the_model_is_a_scoring_error_and_the_rest_are_scored(
    wsettings: Settings, champion: Champion, model_v1: Fitted, tmp_path: Path
) -> None:
    version = champion(poisoned(model_v1)).version
    values = [tx_bytes(i) for i in range(100)]
    values[37] = tx_bytes(37, amount=POISON_AMOUNT)
    source, out, rejects = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "rej.jsonl"
    write_lines(source, values)

    result = score(wsettings, "transactions", "--input", str(source), "--output", str(out),
                   "--rejects", str(rejects), "--json")  # fmt: skip

    summary = json.loads(ok(result))
    assert [p["event_id"] for p in json_lines(out)] == [f"tx-{i}" for i in range(100) if i != 37]
    (reject,) = json_lines(rejects)
    assert (reject["reason"], reject["line"]) == ("scoring_error", 38)
    assert reject["model"] == f"transactions@{version}"
    assert str(POISON_AMOUNT) in reject["detail"]
    assert summary["reject_reasons"] == {"scoring_error": 1}


def test_a_write_that_fails_is_an_output_error_not_an_input_error() -> None:
    writer = LinesWriter("/dev/full")
    try:
        with pytest.raises(OutputError, match="cannot write /dev/full"):
            writer.write([b"k"], [b"x" * (WRITE_BUFFER_BYTES + 1)])
    finally:
        with contextlib.suppress(OSError):
            writer.close()
