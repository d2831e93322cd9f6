"""The benchmark and fault-injection harness (``scripts/bench``, ``scripts/faults``).

Run from the repository root (``python -m bench``, ``python -m bench.faults``), never
installed: the wheel holds ``inferloop`` only. The layout:

- :mod:`bench.harness`: the options, the run and its sections in order;
- :mod:`bench.sections`: throughput, latency, swap, soak, retrain, lowrate;
- :mod:`bench.peers`: what the worker is measured against (the pass-through loops on
  kafka-python and librdkafka, the Quix Streams app);
- :mod:`bench.env`, :mod:`bench.machine`, :mod:`bench.child`, :mod:`bench.stream`,
  :mod:`bench.worker`, :mod:`bench.data`, :mod:`bench.stats`, :mod:`bench.stalls`,
  :mod:`bench.fitload`: the environment, the machine's facts, measurement children,
  the paced streams, the worker's processes, events and models, statistics, probes;
- :mod:`bench.report`: the tables, plots and the summary ready to commit;
- :mod:`bench.faults`: the fault-injection harness;
- :mod:`bench.registry`, :mod:`bench.raw_latency`: standalone measurements.
"""
