"""The results as Markdown tables and PNG plots.

:func:`markdown` renders whatever sections a run has; :func:`table` is the one place a
Markdown table is built. Plots are written with matplotlib's non-interactive backend.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib import pyplot as plt

from bench.stalls import COUNT_FROM_MS

log = logging.getLogger(__name__)

Cell = str | int | float | None

# The target for the end-to-end p99 at half of the measured maximum rate.
LATENCY_TARGET_MS = 50.0


def fmt(value: Cell, digits: int = 0) -> str:
    """A cell: thousands separators, ``digits`` decimals, an en dash for nothing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}"


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Cell]], digits: Sequence[int] = ()
) -> str:
    """A Markdown table; numbers right-aligned, ``digits[i]`` decimals in column ``i``."""
    align = [
        "---:" if any(isinstance(r[i], (int, float)) for r in rows) else "---"
        for i in range(len(headers))
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    for row in rows:
        cells = [fmt(c, digits[i] if i < len(digits) else 0) for i, c in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def spread_text(spread: dict[str, float], digits: int = 0) -> str:
    """``median`` alone, or ``median (low–high)`` over several rounds."""
    if spread.get("n", 1) <= 1:
        return fmt(spread["median"], digits)
    low, high = fmt(spread["low"], digits), fmt(spread["high"], digits)
    return f"{fmt(spread['median'], digits)} ({low}–{high})"


def load_text(section: dict[str, Any]) -> str:
    """The load average (1 min) at the section's start and end."""
    return f"load average {section['load_start'][0]:.2f} → {section['load_end'][0]:.2f}"


# -- sections ----------------------------------------------------------------------------
def _throughput(figures: dict[str, Any]) -> str:
    rows: list[list[Cell]] = []
    for domain, f in figures.items():
        s = f["summary"]
        rows += [
            [domain, f"warm-up: {mode.replace('_', '-')} pass-through", fmt(rate), "not counted"]
            for mode, rate in f.get("warm_up", {}).items()
        ]
        rows += [
            [domain, "consume only (kafka-python)", spread_text(s["consume"]), ""],
            [domain, "naive pass-through (flush + commit per batch)", spread_text(s["naive"]), ""],
            [domain, "pipelined pass-through", spread_text(s["pipelined"]), "baseline"],
            [domain, "exactly-once pass-through", spread_text(s["exactly_once"]), ""],
            [
                domain,
                "model alone, offline (validate + rows + the worker's scorer)",
                spread_text(s["scoring"]),
                "",
            ],
            [domain, "bound 1/(1/pipelined + 1/offline)", spread_text(s["bound"]), ""],
        ]
        for key, spread in s["worker"].items():
            delivery, processes = key.split("/")
            note = ""
            if key == "at-least-once/1":
                note = f"efficiency {spread_text(s['efficiency'], 2)} (target ≥ 0.8)"
                if "efficiency_best_loop" in s:
                    best = spread_text(s["efficiency_best_loop"], 2)
                    note += f"; {best} against the faster of the naive and pipelined loops"
            elif key == "exactly-once/1":
                note = f"{spread_text(s['eos_over_alo'], 2)} × at-least-once (target ≥ 0.6)"
            elif key == "at-least-once/2":
                note = f"{spread_text(s['two_over_one'], 2)} × one process"
            elif ", " in delivery and (plain := delivery.split(", ")[0]) in s.get(
                "shadow_over_plain", {}
            ):
                ratio_text = spread_text(s["shadow_over_plain"][plain], 2)
                note = f"{ratio_text} × without a challenger (target ≥ 0.6)"
            rows.append(
                [
                    domain,
                    f"worker, {delivery}, {processes} process" + ("es" if processes != "1" else ""),
                    spread_text(spread),
                    note,
                ]
            )
        if s.get("quix"):
            rows.append(
                [
                    domain,
                    "Quix Streams app, same model per row",
                    spread_text(s["quix"]),
                    f"worker = {spread_text(s['over_quix'], 1)} × peer (target ≥ 25)",
                ]
            )
    intro = ", ".join(
        f"{d}: {f['events']:,} {f['dataset']} events of {f['event_bytes']} bytes"
        for d, f in figures.items()
    )
    return (
        f"Events per run: {intro}; 4 partitions. Messages per second"
        " (median, and range over rounds).\n\n" + table(["domain", "loop", "msg/s", "ratio"], rows)
    )


def _harness_clients(figures: dict[str, Any]) -> str:
    clients = sorted({f.get("client", "kafka-python") for f in figures.values()})
    return f"The harness's producer and reader: {', '.join(clients)}."


def _latency_label(run: dict[str, Any], half_loads: int = 1) -> str:
    if run.get("warm_up"):
        return f"{run['delivery']} (warm-up of a fresh broker, not counted)"
    if run.get("floor"):
        return f"{run['delivery']} (floor: one hop through the broker)"
    label = str(run["delivery"])
    if run.get("baseline"):
        label += " (baseline: no parsing, no model)"
    elif run.get("native_baseline"):
        label += " (baseline on a C client: no parsing, no model)"
    elif run.get("during_fit"):
        label += ", retrain fitting"
    if "repeat" in run and half_loads > 1:
        label += f", {run['repeat']} of {half_loads}"
    return label


def _half_loads(runs: list[dict[str, Any]]) -> int:
    """How many times the half load was run (each time the worker, then the baselines)."""
    return max((r.get("repeat", 1) for r in runs), default=1)


def _p99_text(runs: list[dict[str, Any]]) -> str:
    """``20 ms`` for one load; ``median 60 ms (47–118)`` for several."""
    p99s = [r["p99_ms"] for r in runs]
    if len(p99s) == 1:
        return f"{p99s[0]:.0f} ms"
    return f"median {statistics.median(p99s):.0f} ms ({min(p99s):.0f}–{max(p99s):.0f})"


def _against_baseline(figures: dict[str, Any]) -> str:
    """Per domain: the worker's p99 at 50 % against the pass-through's at the same load
    (their medians, when the half load was run several times), and the same loop's on
    librdkafka when it ran."""
    lines = []
    for domain, f in figures.items():
        half = [r for r in f["runs"] if r["share"] == 0.5 and not r.get("during_fit")]
        workers = [r for r in half if r["delivery"] == "at-least-once" and r["p99_ms"]]
        bases = [r for r in half if r.get("baseline") and r["p99_ms"]]
        natives = [r for r in half if r.get("native_baseline") and r["p99_ms"]]
        floor = next((r for r in half if r.get("floor")), None)
        if not (workers and bases):
            continue
        ratio = statistics.median(r["p99_ms"] for r in workers) / statistics.median(
            r["p99_ms"] for r in bases
        )
        p50s = [statistics.median(r["p50_ms"] for r in runs) for runs in (workers, bases)]
        many = len(workers) > 1
        met = sum(r["p99_ms"] <= LATENCY_TARGET_MS for r in workers)
        text = (
            f"- {domain} at 50 %{f', {len(workers)} loads of each, alternating' if many else ''}:"
            f" the worker's p99 {_p99_text(workers)}, the pass-through's {_p99_text(bases)}"
            f" ({ratio:.1f} ×; p50{' medians' if many else ''} {p50s[0]:.0f} against"
            f" {p50s[1]:.0f} ms)"
        )
        if natives:
            p50 = statistics.median(r["p50_ms"] for r in natives)
            text += f"; on librdkafka the pass-through's p99 {_p99_text(natives)}"
            text += f" (p50 {p50:.0f} ms)"
        if many:
            text += f"; the worker's p99 ≤ {LATENCY_TARGET_MS:.0f} ms in {met} of {len(workers)}"
            if natives:
                native_met = sum(r["p99_ms"] <= LATENCY_TARGET_MS for r in natives)
                text += f", librdkafka's pass-through's in {native_met} of {len(natives)}"
        if floor and floor["p99_ms"]:
            text += f"; one hop with no loop: p99 {floor['p99_ms']:.0f} ms"
        lines.append(text + ".")
    return "\n\n" + "\n".join(lines) if lines else ""


def _cores(run: dict[str, Any]) -> str | None:
    machine = run.get("machine_busy_cores")
    if machine is None:
        return None
    own = run.get("worker_cores", run.get("loop_cores"))
    return f"{machine:.2f}" + ("" if own is None else f" ({own:.2f})")


def _stalls(run: dict[str, Any]) -> str | None:
    count = run.get("stalls")
    if count is None:
        return None
    return f"{count} ({run['stall_max_ms']:.0f})"


def _latency(figures: dict[str, Any]) -> str:
    rows: list[list[Cell]] = []
    for domain, f in figures.items():
        half_loads = _half_loads(f["runs"])
        for run in [*f.get("warm_up", []), *f["runs"]]:
            cpu, jit = run.get("broker_cpu_s"), run.get("broker_jit_cpu_s")
            rows.append(
                [
                    domain,
                    _latency_label(run, half_loads),
                    f"{run['share']:.0%}",
                    run["rate"],
                    run["achieved_rate"],
                    run["p50_ms"],
                    run["p95_ms"],
                    run["p99_ms"],
                    run["max_ms"],
                    run.get("input_acked_p99_ms"),
                    _cores(run),
                    _stalls(run),
                    None if cpu is None else f"{cpu:.1f} ({jit:.1f})",
                    run.get("broker_gc_max_ms"),
                    run["events"],
                ]
            )
    return (
        "End to end: the input record's Kafka timestamp (set when the producer sent it)"
        " to the prediction read back by a `read_committed` consumer. Target: p99 ≤ 50 ms"
        f" at 50 %. {_harness_clients(figures)} Input acknowledged: the same timestamp to"
        " Kafka's acknowledgement of the input, the leg before any worker. Cores busy: the"
        " machine's average during the load, all processes, with the worker's (or the"
        " loop's) own in brackets. Machine stalls: how often a process that only sleeps"
        f" 2 ms at a time overslept by {COUNT_FROM_MS:.0f} ms or more, with the longest"
        " oversleep in brackets. At nice −20 (where the bench may raise it: as root; its"
        " niceness is in results.json) it waits for almost no other process, so what it"
        " counts are mostly stops of the machine itself, which no process on it can"
        " avoid.\n\n"
        + table(
            [
                "domain",
                "delivery",
                "load",
                "target msg/s",
                "achieved msg/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "input acknowledged p99 ms",
                "cores busy (worker's)",
                "machine stalls (longest ms)",
                "broker CPU s (compiling)",
                "broker's longest GC pause, ms",
                "events",
            ],
            rows,
            [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0],
        )
        + _against_baseline(figures)
    )


def _swap(figures: dict[str, Any]) -> str:
    rows: list[list[Cell]] = []
    for domain, f in figures.items():
        for run in f["runs"]:
            rows.append(
                [
                    domain,
                    run["delivery"],
                    run["rate"],
                    run["swap_s"],
                    run.get("load_s"),
                    run.get("backlog_ms"),
                    run["loop_pause_ms"],
                    run["longest_gap_ms"],
                    run["steady_gap_ms"],
                    run["rss_before_mb"],
                    run["rss_peak_mb"],
                    run["events_in"],
                    run["lost"],
                    run["duplicated"],
                    "yes" if run["ordered"] else "NO",
                ]
            )
    return (
        "A promotion during a steady stream at half the maximum rate. Swap time: from the"
        " promotion to the first new-version prediction in the last input partition;"
        " of which load s: the worker's background load and verification of the new"
        " version, and backlog ms: how long that prediction's input had waited (what piled"
        " up during the load is drained partition by partition). Loop pause: the worker's"
        " own swap pause metric; longest gap: the longest time"
        " without a prediction around the swap, against the longest gap of the steady"
        " stream before it. Target ≤ 1 s; 0 lost and 0 duplicated in exactly-once."
        f" {_harness_clients(figures)}\n\n"
        + table(
            [
                "domain",
                "delivery",
                "msg/s",
                "swap s",
                "load s",
                "backlog ms",
                "loop pause ms",
                "longest gap ms",
                "steady gap ms",
                "RSS before MB",
                "RSS peak MB",
                "events",
                "lost",
                "duplicated",
                "v1 never after v2",
            ],
            rows,
            [0, 0, 0, 2, 2, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0],
        )
    )


def _soak(figures: dict[str, Any]) -> str:
    rows = [
        [
            d,
            f["seconds"] / 60,
            f["rate"],
            f["rss_start_mb"],
            f["rss_end_mb"],
            f["rss_max_mb"],
            f["drift_mb_per_h"],
            f["events_in"],
            f["lost"],
        ]
        for d, f in figures.items()
    ]
    return (
        "A worker at half load; resident memory sampled every few seconds (first minute"
        " of warm-up excluded from the drift).\n\n"
        + table(
            [
                "domain",
                "minutes",
                "msg/s",
                "RSS start MB",
                "RSS end MB",
                "RSS max MB",
                "drift MB/h",
                "events",
                "lost",
            ],
            rows,
            [0, 1, 0, 0, 0, 0, 1, 0, 0],
        )
    )


def _fetch_text(run: dict[str, Any]) -> str:
    return f"{run['fetch_min_bytes']:,} B or {run['fetch_max_wait_ms']:,} ms"


def _range_text(values: list[float], digits: int = 0) -> str:
    low, high = fmt(min(values), digits), fmt(max(values), digits)
    return low if low == high else f"{low}–{high}"


def _lowrate_summary(figures: dict[str, Any]) -> str:
    """Per domain, rate and fetch setting: the worker's cores and the p50 over rounds."""
    lines = []
    for domain, f in figures.items():
        groups: dict[tuple[float, str], list[dict[str, Any]]] = {}
        for run in f["runs"]:
            groups.setdefault((run["rate"], _fetch_text(run)), []).append(run)
        for (rate, fetch), runs in groups.items():
            cores = [r["worker_cores"] for r in runs if r.get("worker_cores") is not None]
            lines.append(
                f"- {domain} at {rate:,.0f} msg/s, fetches answered at {fetch}: the worker"
                f" kept {_range_text(cores, 2) if cores else '–'} of a core busy; p50"
                f" {_range_text([r['p50_ms'] for r in runs], 1)} ms, p99"
                f" {_range_text([r['p99_ms'] for r in runs], 1)} ms"
                f" ({len(runs)} load{'' if len(runs) == 1 else 's'})."
            )
    return "\n\n" + "\n".join(lines) if lines else ""


def _lowrate(figures: dict[str, Any]) -> str:
    rows: list[list[Cell]] = [
        [
            domain,
            run["rate"],
            _fetch_text(run),
            run["round"],
            run["achieved_rate"],
            run["p50_ms"],
            run["p95_ms"],
            run["p99_ms"],
            _cores(run),
            _stalls(run),
            run["events"],
        ]
        for domain, f in figures.items()
        for run in f["runs"]
    ]
    return (
        "One worker at low rates, with the broker answering each fetch at once (the"
        " defaults: 1 byte or 500 ms) or once it holds 64 KiB for it or a few milliseconds"
        " have passed (`fetch_min_bytes`, `fetch_max_wait_ms`); the settings in turn, each"
        f" round. Latency and cores busy as in the latency section. {_harness_clients(figures)}"
        "\n\n"
        + table(
            [
                "domain",
                "msg/s",
                "fetch answered at",
                "round",
                "achieved msg/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "cores busy (worker's)",
                "machine stalls (longest ms)",
                "events",
            ],
            rows,
            [0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0],
        )
        + _lowrate_summary(figures)
    )


def _retrain(figures: dict[str, Any]) -> str:
    rows = [
        [
            r["size"],
            r["run"],
            r["records_from_kafka"],
            r["total_s"],
            r["read"],
            r.get("read.parse"),
            r["fit"],
            r["evaluate"],
            r["register"],
            r.get("peak_rss_mb"),
            r["decision"],
        ]
        for r in figures["rows"]
    ]
    growth = "; ".join(
        f"{g['run']} runs, {g['from']:,} → {g['to']:,} rows: {g['exponent']:.2f}"
        for g in figures.get("growth", [])
    )
    return (
        "The real retrain job on labelled credit-card transactions replayed with fresh ids:"
        " a first run (every record read and parsed), then one after 10 % more labels"
        " arrived (the snapshot cache holds the rest), against the first version as"
        f" champion; {figures.get('fit_threads', 1)} fit thread(s), each size in a process"
        " of its own (its peak resident memory). Growth exponent of the total time"
        f" (time ~ rows^k; 1.0 = linear): {growth or '–'}.\n\n"
        + table(
            [
                "labelled rows",
                "run",
                "records read from Kafka",
                "total s",
                "reading s",
                "of which parsing s",
                "fitting s",
                "evaluating s",
                "registering s",
                "peak RSS MB",
                "decision",
            ],
            rows,
            [0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0],
        )
    )


def _registry(figures: dict[str, Any]) -> str:
    rows: list[list[Cell]] = [
        [
            domain,
            f["artifact_mb"],
            f["resident_mb"],
            f["register_s"],
            f["cold_load_ms"],
            f["unpickle_ms"],
            f["golden_check_ms"],
            f["cached_load_p50_us"],
        ]
        for domain, f in figures["domains"].items()
    ]
    calls: list[list[Cell]] = [
        ["PING (baseline)", figures["ping"]["p50_us"], figures["ping"]["p99_us"]],
        [
            f"resolve {figures.get('resolved', 'emails')} (one HGET)",
            figures["resolve"]["p50_us"],
            figures["resolve"]["p99_us"],
        ],
    ]
    return (
        f"Each domain's own pipeline fitted on {figures['rows']:,} synthetic events and"
        " registered in the run's Redis (append-only, fsync always); a cold load (median of"
        f" {figures['cold_rounds']}) fetches, verifies the signature and digest, unpickles"
        " and runs the golden check in a fresh registry client; a cached load asks for the"
        " same version again.\n\n"
        + table(
            [
                "domain",
                "artifact MB",
                "resident MB",
                "register s",
                "cold load ms",
                "unpickle ms",
                "golden check ms",
                "cached load p50 us",
            ],
            rows,
            [0, 2, 1, 2, 1, 1, 1, 1],
        )
        + f"\n{figures['rounds']:,} calls each, one after another; resolve / PING at p50"
        f" {figures['resolve_over_ping']:.2f}.\n\n"
        + table(["call", "p50 us", "p99 us"], calls, [0, 1, 1])
    )


RENDERERS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "throughput": ("Throughput", _throughput),
    "latency": ("Latency", _latency),
    "swap": ("Model swap", _swap),
    "soak": ("Soak", _soak),
    "retrain": ("Retraining", _retrain),
    "lowrate": ("A worker at low rates", _lowrate),
    "registry": ("Registry", _registry),
}


def machine_text(machine: dict[str, Any]) -> str:
    """One paragraph of machine facts."""
    p = machine["packages"]
    services = machine["services"]
    return (
        f"{machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB;"
        f" Python {machine['python']}, kafka-python {p['kafka-python']}"
        f" (C crc32c in use: {'yes' if machine['crc32c_in_use'] else 'NO'}),"
        f" scikit-learn {p['scikit-learn']}, numpy {p['numpy']},"
        f" Quix Streams {p['quixstreams'] or 'not installed'};"
        f" Apache Kafka {services.get('kafka') or '?'},"
        f" Redis {services.get('redis') or '?'}, on 127.0.0.1."
    )


def source_text(results: dict[str, Any]) -> str:
    """One line: the run, its commit and its date, for the head of ``results.md``."""
    source = results.get("source") or {}
    commit = source.get("commit")
    code = "an unknown commit" if commit is None else f"commit `{commit[:12]}`"
    if source.get("dirty"):
        code += " with uncommitted changes"
    date = results.get("machine", {}).get("time", "an unknown date")
    return f"Run `{results.get('run', '?')}` of {code}, {date}."


def markdown(results: dict[str, Any]) -> str:
    """Every section the results hold, as Markdown."""
    parts = [
        f"# inferloop benchmarks\n\n`{results['command']}`\n\n{source_text(results)}"
        f" {machine_text(results['machine'])}\n"
    ]
    for name, (title, render) in RENDERERS.items():
        section = results["sections"].get(name)
        if section is None:
            continue
        parts.append(
            f"## {title}\n\n({load_text(section)}, {section['seconds']:.0f} s)\n\n"
            + render(section["figures"])
        )
    return "\n".join(parts)


# -- plots -------------------------------------------------------------------------------
def plots(results: dict[str, Any], out: Path) -> list[Path]:
    """A PNG per section that has figures to draw; the files written."""
    matplotlib.use("Agg")
    written: list[Path] = []
    for name, draw in PLOTTERS.items():
        section = results["sections"].get(name)
        if section is not None:
            path = out / f"{name}.png"
            draw(section["figures"], path)
            written.append(path)
    return written


def _plot_throughput(figures: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(1, len(figures), figsize=(6 * len(figures), 4.5), squeeze=False)
    for ax, (domain, f) in zip(axes[0], figures.items(), strict=True):
        s = f["summary"]
        bars = {
            "consume": s["consume"]["median"],
            "naive": s["naive"]["median"],
            "pipelined": s["pipelined"]["median"],
            "exactly-once": s["exactly_once"]["median"],
            "offline scoring": s["scoring"]["median"],
            "bound": s["bound"]["median"],
        }
        bars |= {f"worker {k}": v["median"] for k, v in s["worker"].items()}
        if s.get("quix"):
            bars["Quix peer"] = s["quix"]["median"]
        colours = (
            ["#999999"] * 6 + ["#1f77b4"] * len(s["worker"]) + ["#d62728"] * bool(s.get("quix"))
        )
        ax.barh(list(bars), list(bars.values()), color=colours)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("messages per second (log)")
        ax.set_title(f"{domain}: {f['events']:,} events of {f['event_bytes']} B")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_latency(figures: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for domain, f in figures.items():
        runs = [
            r for r in f["runs"] if r["delivery"] == "at-least-once" and not r.get("during_fit")
        ]
        shares = sorted({r["share"] for r in runs})
        for key, style in (("p50_ms", ":"), ("p95_ms", "--"), ("p99_ms", "-")):
            # The half load's several loads: their median.
            medians = [statistics.median(r[key] for r in runs if r["share"] == s) for s in shares]
            label = f"{domain} {key[:3]}"
            ax.plot([s * 100 for s in shares], medians, style, marker="o", label=label)
    ax.axhline(LATENCY_TARGET_MS, color="red", linewidth=0.8, label="p99 target at 50 %")
    ax.set_xlabel("load, % of the measured maximum rate")
    ax.set_ylabel("end-to-end latency, ms")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_soak(figures: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for domain, f in figures.items():
        ax.plot([t / 60 for t in f["samples_s"]], f["rss_mb"], label=domain)
    ax.set_xlabel("minutes")
    ax.set_ylabel("worker resident memory, MB")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_swap(figures: dict[str, Any], path: Path) -> None:
    runs = [(d, r) for d, f in figures.items() for r in f["runs"]]
    fig, axes = plt.subplots(len(runs), 1, figsize=(7, 2.2 * len(runs)), squeeze=False)
    for ax, (domain, r) in zip(axes[:, 0], runs, strict=True):
        t = r["timeline"]
        ax.plot(t["t_s"], t["rss_mb"], color="#555555", label="RSS MB")
        ax.axvline(0, color="red", linewidth=0.8, label="promotion")
        ax.axvline(r["swap_s"], color="green", linewidth=0.8, label="all partitions on v2")
        ax.set_title(f"{domain}, {r['delivery']}", fontsize=9)
        ax.set_ylabel("RSS MB")
    axes[-1, 0].set_xlabel("seconds from the promotion")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_retrain(figures: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharey=True)
    for ax, run in zip(axes, ("first", "+10%"), strict=True):
        rows = sorted((r for r in figures["rows"] if r["run"] == run), key=lambda r: r["size"])
        sizes = [r["size"] for r in rows]
        for step in ("total_s", "read", "fit", "evaluate", "register"):
            label = "total" if step == "total_s" else step
            # A step that took no time (no champion to evaluate on a first run) is left out.
            seconds = [r[step] if r[step] > 0 else math.nan for r in rows]
            ax.plot(sizes, seconds, marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("labelled rows")
        ax.set_title(f"{run} run", fontsize=10)
    axes[0].set_ylabel("seconds")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PLOTTERS: dict[str, Callable[[dict[str, Any], Path], None]] = {
    "throughput": _plot_throughput,
    "latency": _plot_latency,
    "swap": _plot_swap,
    "soak": _plot_soak,
    "retrain": _plot_retrain,
}
