"""``python -m bench.faults``: the fault-injection harness (:mod:`bench.faults.harness`)."""

from bench.faults.harness import main

main()
