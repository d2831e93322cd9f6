"""``python -m bench``: the benchmark harness (:mod:`bench.harness`)."""

from bench.harness import main

main()
