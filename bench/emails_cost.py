"""What an email costs a worker, step by step, in microseconds per email (issue 36).

The emails path as ``worker.batch.BatchProcessor`` runs it, on batches of real events
(the JSON ``inferloop replay`` publishes) of each size asked for, timed one step at a
time on that step's own input:

- ``validate``: the domain's ``validate_batch`` (bytes to events);
- ``rows``: the rows as the worker builds them (``to_rows``, only the columns the
  compiled model reads: the text and its start, not the header tokens);
- ``hash <block>``: each token block's hashed counts of its column of the rows;
- ``linear``: the rest of the compiled model's call (TF-IDF weights, the regression);
- ``encode``: the predictions' JSON (``PredictionEncoder.encode``);
- ``partition``: the batch's keys hashed to partitions (``partitions_of``);
- ``append``: ``KafkaInternals.append_records``, the worker's append path (the
  ``batch_append`` shortcut), into a producer with no broker: it knows the topic's
  partitions without asking, keeps the batches and drops them at the end;
- ``process``: ``BatchProcessor.process`` of the batch, end to end (validate, rows,
  score, encode): the check that the steps add up.

The model is the domain's pipeline fitted on 60 % of the data set (seeded shuffle) and
compiled as a worker compiles it; the events timed are the other 40 %, every one's score
checked to be exactly the pipeline's ``predict_proba``. Each step is timed
over every batch ``--repeats`` times, as the CPU time of this thread (what the step
costs a core, less sensitive to the machine's load than wall time, though a loaded
machine's caches still slow it: the load average is printed beside the figures); the
median repeat is reported.

    .venv/bin/python -m bench.emails_cost [--data sms,spamassassin] [--batches 50,500]
        [--repeats 5] [--data-dir ../shared/data] [--cache-dir DIR] [--json FILE]
        [--ablate] [--prepare native|python]

``--ablate`` instead fits the pipeline without each of its token blocks in turn and
prints what each costs and buys (see :func:`ablation`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from kafka import KafkaProducer
from threadpoolctl import threadpool_limits

from inferloop.domains import get_domain, hashing
from inferloop.domains.datasets import load_dataset
from inferloop.domains.metrics import f1_at_fpr, threshold_at_fpr, threshold_metrics
from inferloop.domains.predictions import PredictionEncoder
from inferloop.kafka_internals import KafkaInternals
from inferloop.registry.serving import ActiveModel
from inferloop.worker.batch import Batch, BatchProcessor
from inferloop.worker.partitioning import partitions_of

FIT_SHARE = 0.6
SEED = 42
PARTITIONS = 4
# The worker's producer defaults (WorkerSettings.producer_batch_bytes, linger_ms).
PRODUCER_BATCH_BYTES = 262_144
LINGER_MS = 5
MODEL_JSON = '{"name":"emails","version":1}'
PREDICTED_AT = "2026-12-07T19:30:00.000000+00:00"
TOPIC = "emails.predictions"
# Nothing listens there: the producer never reaches a broker (its IO thread retries).
NO_BROKER = "127.0.0.1:9"


class UnconnectedProducer(KafkaProducer):  # type: ignore[misc]
    """A producer that knows the predictions topic's partitions without a broker, so the
    append path runs as the worker's does and nothing is sent."""

    def partitions_for(self, topic: str) -> set[int]:
        """The bench's partitions, for any topic."""
        return set(range(PARTITIONS))


def unconnected_producer() -> KafkaProducer:
    """The worker's producer settings, pointed at no broker (kafka's logs silenced)."""
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    return UnconnectedProducer(
        bootstrap_servers=NO_BROKER, api_version=(3, 0), acks=1,
        batch_size=PRODUCER_BATCH_BYTES, linger_ms=LINGER_MS,
    )  # fmt: skip


class Record(NamedTuple):
    """What the worker reads of a polled record."""

    value: bytes
    timestamp: int
    offset: int
    key: bytes | None = None
    topic: str = "emails"
    partition: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Corpus:
    """A data set as event JSON and labels, split into what is fitted and what is timed."""

    name: str
    values: list[bytes]
    y: np.ndarray[Any, Any]


def load_corpus(name: str, data_dir: Path, cache_dir: Path | None) -> Corpus:
    """The data set ``name`` as event JSON (from ``cache_dir`` when it holds it: parsing
    SpamAssassin's raw mail takes half a minute)."""
    cached = cache_dir / f"{name}.jsonl" if cache_dir else None
    if cached is not None and cached.exists():
        lines = cached.read_bytes().splitlines()
        y = np.array([int(line[:1]) for line in lines], dtype=np.int8)
        return Corpus(name, [line[2:] for line in lines], y)
    dataset = load_dataset(name, data_dir)
    values = [e.model_dump_json().encode() for e in dataset.events]
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(
            b"".join(b"%d %s\n" % (label, v) for label, v in zip(dataset.y, values, strict=True))
        )
    return Corpus(name, values, np.asarray(dataset.y))


def fitted_model(corpus: Corpus) -> tuple[ActiveModel, list[bytes]]:
    """The emails pipeline fitted on a seeded 60 % of ``corpus``, compiled as a worker
    serves it, and the other 40 % of the events' JSON."""
    spec = get_domain("emails")
    order = np.random.default_rng(SEED).permutation(len(corpus.values))
    cut = int(len(order) * FIT_SHARE)
    fit, timed = order[:cut], order[cut:]
    validated = spec.validate_batch([corpus.values[i] for i in fit])
    pipeline = spec.build_pipeline(SEED)
    with threadpool_limits(limits=1):
        pipeline.fit(spec.to_rows(validated.events), corpus.y[fit][validated.indices])
    scorer = spec.scorers(pipeline)[0]
    model = ActiveModel(
        name="emails", version=1, digest="", threshold=0.5, pipeline=pipeline, spec=spec,
        scorer=scorer,
    )  # fmt: skip
    return model, [corpus.values[i] for i in timed]


def ablation(corpus: Corpus) -> list[dict[str, Any]]:
    """What each token block of the pipeline costs and buys: the pipeline fitted as
    :func:`fitted_model` fits it, whole and without each block in turn; for each, the
    compiled model's scoring µs per email (batches of 50) and, on the timed 40 %, F1 at
    0.5 % and 1 % of ham flagged and MCC at the 0.5 % threshold (thresholds chosen on
    those very scores: descriptive, not the project's forward out-of-fold protocol)."""
    spec = get_domain("emails")
    order = np.random.default_rng(SEED).permutation(len(corpus.values))
    cut = int(len(order) * FIT_SHARE)
    fit = spec.validate_batch([corpus.values[i] for i in order[:cut]])
    timed = spec.validate_batch([corpus.values[i] for i in order[cut:]])
    y_fit, y = corpus.y[order[:cut]][fit.indices], corpus.y[order[cut:]][timed.indices]
    fit_rows, rows = spec.to_rows(fit.events), spec.to_rows(timed.events)
    names = [name for name, _, _ in spec.build_pipeline(SEED).steps[0][1].transformers]
    out = []
    for dropped in [None, *names]:
        pipeline = spec.build_pipeline(SEED)
        if dropped is not None:
            pipeline.set_params(**{f"features__{dropped}": "drop"})
        with threadpool_limits(limits=1):
            pipeline.fit(fit_rows, y_fit)
        scorer = spec.scorers(pipeline)[0]
        scores = np.concatenate([scorer(rows[i : i + 50]) for i in range(0, len(rows), 50)])
        started = time.thread_time()
        for i in range(0, len(rows) - 49, 50):
            scorer(rows[i : i + 50])
        us = (time.thread_time() - started) / (len(rows) // 50 * 50) * 1e6
        at_half = threshold_metrics(y, scores, threshold_at_fpr(y, scores, 0.005))
        out.append({
            "blocks": "all" if dropped is None else f"without {dropped}",
            "score_us": us,
            "f1_at_ham_0.5pct": at_half["f1"],
            "f1_at_ham_1pct": f1_at_fpr(y, scores, 0.01),
            "mcc_at_ham_0.5pct": at_half["mcc"],
        })  # fmt: skip
    return out


def ablation_table(results: dict[str, list[dict[str, Any]]]) -> str:
    """A Markdown table of :func:`ablation`'s figures, a row per data set and model."""
    lines = [
        "| data | blocks | score µs per email (x50) | F1 at 0.5 % ham flagged | F1 at 1 % "
        "| MCC at 0.5 % |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for data, rows in results.items():
        lines.extend(
            f"| {data} | {r['blocks']} | {r['score_us']:.1f} | {r['f1_at_ham_0.5pct']:.3f} "
            f"| {r['f1_at_ham_1pct']:.3f} | {r['mcc_at_ham_0.5pct']:.3f} |"
            for r in rows
        )
    return "\n".join(lines)


def batches_of(values: list[bytes], size: int) -> list[list[bytes]]:
    """``values`` cut into whole batches of ``size`` (a short tail is dropped)."""
    return [values[i : i + size] for i in range(0, len(values) - size + 1, size)]


class Stage(NamedTuple):
    """One batch as each step takes it."""

    values: list[bytes]
    events: list[Any]
    rows: Any
    scores: Any
    keys: list[bytes]
    predictions: list[bytes]
    partitions: list[int]


def worker_rows(model: ActiveModel, events: list[Any]) -> Any:
    """The rows as the worker builds them for ``model``: only the columns its scorer
    reads, when it says which (``BatchProcessor._champion_score``)."""
    columns = getattr(model.scorer, "columns", None)
    rows_for = getattr(model.spec, "rows_for", None)
    if columns is None or rows_for is None:
        return model.spec.to_rows(events)
    return rows_for(events, columns)


def stages(model: ActiveModel, batches: list[list[bytes]]) -> list[Stage]:
    """Every batch run through the path once: each step's input, ready to be timed."""
    encoder = PredictionEncoder("emails", model.spec.label_names)
    out = []
    for values in batches:
        events = model.spec.validate_batch(values).events
        rows = worker_rows(model, events)
        scores = model.scorer(rows)
        # The worker's scores are the fitted pipeline's, on the whole rows, exactly.
        want = model.pipeline.predict_proba(model.spec.to_rows(events))[:, 1]
        if not np.array_equal(scores, want):
            raise SystemExit(f"scores differ from predict_proba by {np.max(np.abs(scores - want))}")
        encoded = encoder.encode(
            events, scores, threshold=0.5, model_json=MODEL_JSON, predicted_at=PREDICTED_AT
        )
        parts = partitions_of(encoded.keys, PARTITIONS)
        out.append(Stage(values, events, rows, scores, encoded.keys, encoded.values, parts))
    return out


def steps(model: ActiveModel, producer: KafkaProducer) -> dict[str, Callable[[Stage], Any]]:
    """Each step of the path, as a function of a batch's stage (``append`` into
    ``producer``)."""
    spec = model.spec
    encoder = PredictionEncoder("emails", spec.label_names)
    processor = BatchProcessor(spec, worker_name="bench", max_request_size=1_048_576)
    blocks = getattr(model.scorer, "blocks", ())
    internals = KafkaInternals(("batch_append",))
    if not internals.usable("batch_append", producer):  # send() would wait for a broker
        raise SystemExit("kafka-python's batch_append shape changed: append not measurable")

    def hashing(block: Any) -> Callable[[Stage], Any]:
        return lambda st: block.tokens.counts(st.rows[:, block.column])

    def append(st: Stage) -> None:
        internals.append_records(producer, TOPIC, st.keys, st.predictions, st.partitions)

    def process(st: Stage) -> None:
        records = [Record(v, 1_700_000_000_000, i) for i, v in enumerate(st.values)]
        processor.process(Batch(records, {}, {}), model)

    found: dict[str, Callable[[Stage], Any]] = {
        "validate": lambda st: spec.validate_batch(st.values),
        "rows": lambda st: worker_rows(model, st.events),
        "score": lambda st: model.scorer(st.rows),
    }
    for block in blocks:
        found[f"hash {_block_name(block)}"] = hashing(block)
    found |= {
        "encode": lambda st: encoder.encode(
            st.events,
            st.scores,
            threshold=0.5,
            model_json=MODEL_JSON,
            predicted_at=PREDICTED_AT,
        ),
        "partition": lambda st: partitions_of(st.keys, PARTITIONS),
        "append": append,
        "process": process,
    }
    return found


def _block_name(block: Any) -> str:
    analyzer = block.tokens.analyzer
    return {"word": "words", "whitespace": "header tokens", "char": "char n-grams"}[analyzer]


def time_steps(
    named: dict[str, Callable[[Stage], Any]], batch_stages: list[Stage], repeats: int
) -> dict[str, float]:
    """Median over ``repeats`` of each step's microseconds per email, over every batch."""
    n = sum(len(st.values) for st in batch_stages)
    for step in named.values():  # warm: numba's first call, caches
        step(batch_stages[0])
    samples: dict[str, list[float]] = {name: [] for name in named}
    for _ in range(repeats):
        # Steps interleaved per repeat, so a burst of load touches all of them alike.
        for name, step in named.items():
            started = time.thread_time()
            for st in batch_stages:
                step(st)
            samples[name].append((time.thread_time() - started) / n * 1e6)
    us = {name: statistics.median(values) for name, values in samples.items()}
    hashed = sum(v for k, v in us.items() if k.startswith("hash "))
    us["linear"] = us["score"] - hashed
    return us


ORDER = ("validate", "rows", "hash words", "hash header tokens", "hash char n-grams",
         "linear", "score", "encode", "partition", "append", "process")  # fmt: skip


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """A Markdown table: a row per step, a column per data set and batch size."""
    columns = [(data, size) for data, by_size in results.items() for size in by_size]
    head = "| step (µs per email) | " + " | ".join(f"{d} x{s}" for d, s in columns) + " |"
    lines = [head, "|---|" + "---:|" * len(columns)]
    for step in ORDER:
        if not any(step in results[d][s] for d, s in columns):
            continue
        cells = [f"{results[d][s].get(step, float('nan')):.1f}" for d, s in columns]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    total = [results[d][s] for d, s in columns]
    cells = [
        f"{r['validate'] + r['rows'] + r['score'] + r['encode'] + r['partition'] + r['append']:.1f}"
        for r in total
    ]
    lines.append("| sum of the steps | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Time the emails path per step; print a Markdown table (and write JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="sms,spamassassin")
    parser.add_argument("--batches", default="50,500")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--ablate", action="store_true", help="only each block's cost and F1")
    parser.add_argument(
        "--prepare", choices=("native", "python"), default="native",
        help="lower-case and strip accents in the native loop (the default) or in Python",
    )  # fmt: skip
    args = parser.parse_args(argv)
    hashing.native_preparation.enabled = args.prepare == "native"
    if args.ablate:
        ablated = {
            name: ablation(load_corpus(name, args.data_dir, args.cache_dir))
            for name in args.data.split(",")
        }
        print(ablation_table(ablated))
        if args.json is not None:
            args.json.write_text(json.dumps({"ablation": ablated}, indent=1))
        return
    results: dict[str, dict[str, dict[str, float]]] = {}
    loads = [os.getloadavg()[0]]
    producer = unconnected_producer()
    try:
        with threadpool_limits(limits=1):
            for name in args.data.split(","):
                model, timed = fitted_model(load_corpus(name, args.data_dir, args.cache_dir))
                results[name] = {}
                for size in (int(b) for b in args.batches.split(",")):
                    batch_stages = stages(model, batches_of(timed, size))
                    named = steps(model, producer)
                    results[name][str(size)] = time_steps(named, batch_stages, args.repeats)
                    loads.append(os.getloadavg()[0])
    finally:
        KafkaInternals().discard(producer)
    print(table(results))
    print(f"\nscorer: {model.scorer.name}, {args.prepare} text preparation; "
          f"load average (1 min) {min(loads):.1f}-{max(loads):.1f}")  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps({"us_per_email": results, "load_1min": loads}, indent=1))


if __name__ == "__main__":
    main()
