"""The benchmark and fault-injection harness (``scripts/bench``, ``scripts/faults``).

Run from the repository root (``python -m bench``, ``python -m bench.faults``), never
installed: the wheel holds ``inferloop`` only. The layout:

- :mod:`bench.harness`: the options, the run and its sections in order;
- :mod:`bench.sections`: throughput, latency, swap, soak, retrain, lowrate, registry;
- :mod:`bench.peers`: what the worker is measured against (the pass-through loops on
  kafka-python and librdkafka, the Quix Streams app);
- :mod:`bench.env`, :mod:`bench.machine`, :mod:`bench.child`, :mod:`bench.stream`,
  :mod:`bench.worker`, :mod:`bench.data`, :mod:`bench.stats`, :mod:`bench.stalls`,
  :mod:`bench.fitload`: the environment, the machine's facts, measurement children,
  the paced streams, the worker's processes, events and models, statistics, probes;
- :mod:`bench.report`: the tables and plots; :mod:`bench.summary`: the summary ready to
  commit (``results.md``, ``results.json``) and ``--publish``;
- :mod:`bench.faults`: the fault-injection harness;
- :mod:`bench.raw_latency`: a standalone measurement of the broker's latency floor.
"""
