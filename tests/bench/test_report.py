"""Tables, plots and the event-id surgery of the benchmark harness."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.data import id_of, with_id
from bench.report import Cell, fmt, machine_text, markdown, plots, table
from bench.sections.retrain import growth


def test_cells_are_formatted_with_separators_and_dashes() -> None:
    assert fmt(35_712.4) == "35,712"
    assert fmt(0.8123, 2) == "0.81"
    assert fmt(None) == "–"
    assert fmt(float("nan")) == "–"
    assert fmt("text") == "text"


def test_a_table_aligns_numbers_right() -> None:
    rows: list[list[Cell]] = [["naive", 32_500.0, 0.91], ["pipelined", 35_700, None]]
    text = table(["loop", "msg/s", "ratio"], rows, [0, 0, 2])
    assert text.splitlines() == [
        "| loop | msg/s | ratio |",
        "|---|---:|---:|",
        "| naive | 32,500 | 0.91 |",
        "| pipelined | 35,700 | – |",
    ]


def spread(x: float) -> dict[str, float]:
    return {"median": x, "low": x, "high": x, "n": 1}


def results() -> dict[str, Any]:
    rates = {
        "at-least-once/1": 16_000.0,
        "exactly-once/1": 11_000.0,
        "at-least-once/2": 20_000.0,
        "exactly-once/2": 15_000.0,
        "at-least-once, challenger in shadow/1": 12_000.0,
    }
    worker = {k: spread(r) for k, r in rates.items()}
    summary = {
        "consume": spread(150_000),
        "naive": spread(30_000),
        "pipelined": spread(33_000),
        "exactly_once": spread(22_000),
        "scoring": spread(60_000),
        "bound": spread(21_290),
        "worker": worker,
        "efficiency": spread(0.75),
        "efficiency_best_loop": spread(0.7),
        "eos_over_alo": spread(0.69),
        "two_over_one": spread(1.25),
        "shadow_over_plain": {"at-least-once": spread(0.75)},
        "quix": spread(600.0),
        "over_quix": spread(26.7),
    }
    latency_runs = [
        {
            "delivery": "at-least-once",
            "share": s,
            "rate": 16_000 * s,
            "achieved_rate": 16_000 * s,
            "p50_ms": 4.0,
            "p95_ms": 9.0,
            "p99_ms": 20.0 + s,
            "max_ms": 40.0,
            "broker_gc_max_ms": 12.3 if s == 0.5 else None,
            "broker_cpu_s": 14.5 if s == 0.5 else None,
            "broker_jit_cpu_s": 3.0 if s == 0.5 else None,
            "events": 1000,
        }
        | (
            {"input_acked_p99_ms": 6.5, "machine_busy_cores": 1.5, "worker_cores": 0.8}
            | {"stalls": 3, "stall_max_ms": 89.5, "stalled_ms": 160.0, "stall_probe_nice": -20}
            if s == 0.5
            else {}
        )
        for s in (0.25, 0.5, 0.75)
    ]
    latency_runs.append(
        {k: v for k, v in latency_runs[1].items() if k != "worker_cores"}
        | {"delivery": "pipelined pass-through", "baseline": True, "p50_ms": 2.0, "p99_ms": 8.2}
        | {"loop_cores": 0.45}
    )
    latency_runs.append(
        latency_runs[1]
        | {"delivery": "no loop: producer to reader", "floor": True, "p50_ms": 1.0, "p99_ms": 3.4}
    )
    section = {"seconds": 12.0, "load_start": [0.5, 0.4, 0.3], "load_end": [0.9, 0.5, 0.3]}
    return {
        "command": "scripts/bench --quick",
        "machine": {
            "cores": 2,
            "cpu": "test cpu",
            "memory_gib": 24,
            "python": "3.11.7",
            "packages": {
                "kafka-python": "3.0.12",
                "scikit-learn": "1.9.1",
                "numpy": "2.4",
                "quixstreams": "3.28",
            },
            "crc32c_in_use": True,
            "services": {"kafka": "4.3.1", "redis": "7.0.15"},
        },
        "sections": {
            "throughput": section
            | {
                "figures": {
                    "transactions": {
                        "dataset": "creditcard",
                        "events": 1000,
                        "event_bytes": 810,
                        "warm_up": {"pipelined": 9_000.0, "exactly_once": 7_000.0},
                        "summary": summary,
                    }
                }
            },
            "latency": section
            | {
                "figures": {
                    "transactions": {
                        "client": "librdkafka",
                        "warm_up": [latency_runs[1] | {"warm_up": True, "p99_ms": 370.0}],
                        "runs": latency_runs,
                    }
                }
            },
        },
    }


def test_markdown_shows_every_section_with_its_load_and_the_targets() -> None:
    text = markdown(results())
    assert "## Throughput" in text
    assert "## Latency" in text
    assert "## Soak" not in text
    assert "load average 0.50 → 0.90" in text
    assert (
        "| transactions | worker, at-least-once, 1 process | 16,000 | efficiency 0.75 (target"
        " ≥ 0.8); 0.70 against the faster of the naive and pipelined loops |" in text
    )
    assert "worker = 26.7 × peer" in text
    # The shadow row is set against the same delivery without a challenger, and only it.
    assert (
        "| transactions | worker, at-least-once, challenger in shadow, 1 process | 12,000 |"
        " 0.75 × without a challenger (target ≥ 0.6) |" in text
    )
    assert "| transactions | worker, exactly-once, 2 processes | 15,000 |  |" in text
    # The fresh broker's warm-up loops are shown first, apart, and not counted.
    assert "| transactions | warm-up: pipelined pass-through | 9,000 | not counted |" in text
    assert "| transactions | warm-up: exactly-once pass-through | 7,000 | not counted |" in text
    assert text.index("warm-up: exactly-once") < text.index("consume only")
    assert (
        "| transactions | at-least-once | 50% | 8,000 | 8,000 | 4.0 | 9.0 | 20.5 | 40.0"
        " | 6.5 | 1.50 (0.80) | 3 (90) | 14.5 (3.0) | 12.3 | 1,000 |" in text
    )
    # A load without the CPU and stall figures (an older run's) leaves their cells empty.
    assert "| 25% | 4,000 | 4,000 | 4.0 | 9.0 | 20.2 | 40.0 | – | – | – | – | – | 1,000 |" in text
    assert "| 8.2 | 40.0 | 6.5 | 1.50 (0.45) |" in text  # the loop's own cores
    # The warm-up load is shown first, apart, and not taken for the worker at 50 %.
    assert (
        "| transactions | at-least-once (warm-up of a fresh broker, not counted) | 50% | 8,000"
        " | 8,000 | 4.0 | 9.0 | 370.0 |" in text
    )
    assert text.index("(warm-up of a fresh broker") < text.index("| 25% |")
    assert "| pipelined pass-through (baseline: no parsing, no model) | 50% |" in text
    assert "| no loop: producer to reader (floor: one hop through the broker) | 50% |" in text
    assert "The harness's producer and reader: librdkafka." in text
    assert (
        "the worker's p99 20 ms, the pass-through's 8 ms (2.5 ×; p50 4 against 2 ms);"
        " one hop with no loop: p99 3 ms." in text
    )


def test_a_half_load_run_several_times_is_reported_by_its_medians(tmp_path: Path) -> None:
    run = results()
    figures = run["sections"]["latency"]["figures"]["transactions"]
    quarter, half, three_quarters, base, floor = figures["runs"]
    figures["runs"] = [quarter]
    for repeat, (mine, theirs) in enumerate([(40.0, 80.0), (118.0, 140.0), (60.0, 100.0)], 1):
        figures["runs"].append(half | {"repeat": repeat, "p99_ms": mine})
        figures["runs"].append(base | {"repeat": repeat, "p99_ms": theirs})
    figures["runs"] += [three_quarters, floor]
    text = markdown(run)
    assert (
        "- transactions at 50 %, 3 loads of each, alternating: the worker's p99 median 60 ms"
        " (40–118), the pass-through's median 100 ms (80–140) (0.6 ×; p50 medians 4 against"
        " 2 ms); the worker's p99 ≤ 50 ms in 1 of 3; one hop with no loop: p99 3 ms." in text
    )
    assert "| transactions | at-least-once, 2 of 3 | 50% |" in text
    assert "| pipelined pass-through (baseline: no parsing, no model), 3 of 3 | 50% |" in text
    # The warm-up load and the floor were run once: no count beside them.
    assert "| no loop: producer to reader (floor: one hop through the broker) | 50% |" in text
    assert "(warm-up of a fresh broker, not counted) | 50% |" in text
    assert "latency.png" in [p.name for p in plots(run, tmp_path)]


def test_the_pass_through_on_librdkafka_is_reported_beside_kafka_pythons() -> None:
    run = results()
    figures = run["sections"]["latency"]["figures"]["transactions"]
    quarter, half, three_quarters, base, floor = figures["runs"]
    native = base | {"delivery": "pipelined pass-through, librdkafka", "native_baseline": True}
    del native["baseline"]
    figures["runs"] = [quarter]
    for repeat, (mine, theirs, its) in enumerate([(40, 80, 45), (118, 140, 90), (60, 100, 70)], 1):
        figures["runs"].append(half | {"repeat": repeat, "p99_ms": mine})
        figures["runs"].append(base | {"repeat": repeat, "p99_ms": theirs})
        figures["runs"].append(native | {"repeat": repeat, "p99_ms": its, "p50_ms": 1.5})
    figures["runs"] += [three_quarters, floor]
    text = markdown(run)
    assert (
        "| pipelined pass-through, librdkafka (baseline on a C client: no parsing, no model),"
        " 2 of 3 | 50% |" in text
    )
    # Neither the worker's figures nor kafka-python's loop's take the C client's loads in.
    assert (
        "the worker's p99 median 60 ms (40–118), the pass-through's median 100 ms (80–140)"
        " (0.6 ×; p50 medians 4 against 2 ms); on librdkafka the pass-through's p99 median"
        " 70 ms (45–90) (p50 2 ms); the worker's p99 ≤ 50 ms in 1 of 3, librdkafka's"
        " pass-through's in 1 of 3; one hop with no loop: p99 3 ms." in text
    )


def test_plots_are_written_as_png(tmp_path: Path) -> None:
    written = plots(results(), tmp_path)
    assert sorted(p.name for p in written) == ["latency.png", "throughput.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_an_events_id_is_replaced_without_touching_the_rest() -> None:
    value = json.dumps({"id": "cc-000001", "amount": 1.5}, separators=(",", ":")).encode()
    changed = with_id(value, "lat-42")
    assert json.loads(changed) == {"id": "lat-42", "amount": 1.5}
    assert id_of(changed) == "lat-42"
    with pytest.raises(ValueError, match="id first"):
        with_id(b'{"amount": 1.5, "id": "x"}', "y")


def test_the_swap_table_names_the_harness_client_and_flags_a_disordered_partition() -> None:
    run = {
        "delivery": "exactly-once",
        "rate": 9_464.0,
        "swap_s": 1.384,
        "load_s": 0.66,
        "backlog_ms": 412.0,
        "loop_pause_ms": 0.016,
        "longest_gap_ms": 231.0,
        "steady_gap_ms": 106.0,
        "rss_before_mb": 286.0,
        "rss_peak_mb": 316.0,
        "events_in": 189_283,
        "lost": 0,
        "duplicated": 0,
        "ordered": False,
    }
    figures = {"transactions": {"client": "librdkafka", "runs": [run]}}
    section = {"seconds": 1.0, "load_start": [0.5, 0.4, 0.3], "load_end": [0.9, 0.5, 0.3]}
    text = markdown(results() | {"sections": {"swap": section | {"figures": figures}}})
    assert "## Model swap" in text
    assert "The harness's producer and reader: librdkafka." in text
    assert (
        "| transactions | exactly-once | 9,464 | 1.38 | 0.66 | 412 | 0.016 | 231 | 106 | 286 | 316"
        " | 189,283 | 0 | 0 | NO |" in text
    )


def retrain_row(size: int, run: str, total_s: float) -> dict[str, Any]:
    examples = size if run == "first" else size + size // 10
    return {
        "size": size,
        "run": run,
        "total_s": total_s,
        "read": total_s / 4,
        "read.parse": total_s / 8,
        "fit": total_s / 2,
        "evaluate": 0.0 if run == "first" else total_s / 8,
        "register": total_s / 8,
        "records_from_kafka": examples if run == "first" else size // 10,
        "examples": examples,
        "peak_rss_mb": 300 + size // 1000,
        "decision": "promoted" if run == "first" else "rejected",
    }


def test_the_retrain_section_reports_each_step_and_the_growth_exponent(tmp_path: Path) -> None:
    # Ten times the rows for ten times the time on first runs (linear), for 10^0.5 times
    # the time on the runs after 10 % more labels.
    rows = [
        retrain_row(10_000, "first", 4.0),
        retrain_row(10_000, "+10%", 3.0),
        retrain_row(100_000, "first", 40.0),
        retrain_row(100_000, "+10%", 3.0 * 10**0.5),
    ]
    found = growth(rows)
    figures = {"fit_threads": 1, "folds": 5, "rows": rows, "growth": found}
    assert [(g["run"], g["from"], g["to"]) for g in found] == [
        ("first", 10_000, 100_000),
        ("+10%", 10_000, 100_000),
    ]
    assert [g["exponent"] for g in found] == pytest.approx([1.0, 0.5])
    section = {"seconds": 60.0, "load_start": [0.5, 0.4, 0.3], "load_end": [0.9, 0.5, 0.3]}
    run = results()
    run["sections"] = {"retrain": section | {"figures": figures}}
    text = markdown(run)
    assert "## Retraining" in text
    assert "first runs, 10,000 → 100,000 rows: 1.00; +10% runs, 10,000 → 100,000 rows: 0.50" in text
    assert (
        "| 100,000 | first | 100,000 | 40.0 | 10.0 | 5.0 | 20.0 | 0.0 | 5.0 | 400 | promoted |"
        in text
    )
    assert "| 10,000 | +10% | 1,000 | 3.0 |" in text
    written = plots(run, tmp_path)
    assert [p.name for p in written] == ["retrain.png"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_machine_text_says_when_the_peer_is_not_installed() -> None:
    machine = results()["machine"]
    assert "Quix Streams 3.28;" in machine_text(machine)
    machine["packages"]["quixstreams"] = None  # the faults run without the bench extra
    assert "Quix Streams not installed;" in machine_text(machine)


def lowrate_run(rate: float, fetch: tuple[int, int], n: int, cores: float, p50: float) -> Any:
    """One load of the lowrate section as ``bench_lowrate.run`` records it."""
    return {
        "rate": rate,
        "achieved_rate": rate,
        "p50_ms": p50,
        "p95_ms": p50 * 2,
        "p99_ms": p50 * 3,
        "worker_cores": cores,
        "machine_busy_cores": cores + 0.5,
        "stalls": 0,
        "stall_max_ms": 4.0,
        "events": 10_000,
        "fetch_min_bytes": fetch[0],
        "fetch_max_wait_ms": fetch[1],
        "round": n,
    }


def test_the_lowrate_section_shows_every_load_and_each_setting_s_range() -> None:
    run = results()
    runs = [
        lowrate_run(500, (1, 500), 1, 0.78, 11.3),
        lowrate_run(500, (65_536, 10), 1, 0.34, 19.3),
        lowrate_run(500, (1, 500), 2, 0.80, 11.7),
        lowrate_run(500, (65_536, 10), 2, 0.36, 19.9),
    ]
    figures = {"transactions": {"seconds": 30, "client": "librdkafka", "rounds": 2, "runs": runs}}
    run["sections"]["lowrate"] = {"seconds": 200, "load_start": [0.5], "load_end": [0.9],
                                  "figures": figures}  # fmt: skip
    text = markdown(run)
    assert "## A worker at low rates" in text
    assert (
        "| transactions | 500 | 65,536 B or 10 ms | 2 | 500 | 19.9 | 39.8 | 59.7 | 0.86 (0.36)"
        " | 0 (4) | 10,000 |" in text
    )
    assert (
        "- transactions at 500 msg/s, fetches answered at 1 B or 500 ms: the worker kept"
        " 0.78–0.80 of a core busy; p50 11.3–11.7 ms, p99 33.9–35.1 ms (2 loads)." in text
    )
    assert "fetches answered at 65,536 B or 10 ms: the worker kept 0.34–0.36 of a core" in text
