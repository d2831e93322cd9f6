"""The swap section's figures from the predictions read back (pure logic)."""

from __future__ import annotations

from bench.sections.swap import SwapTiming, swap_figures

PROMOTED_MS = 10_000.0


def test_the_swap_time_is_the_last_partition_to_reach_the_new_version_with_its_backlog() -> None:
    rows = {
        # (input offset, version, prediction sent ms, input sent ms)
        0: [(0, 1, 9_900, 9_890), (1, 2, 10_300, 10_280), (2, 2, 10_310, 10_300)],
        1: [(0, 1, 10_100, 9_950), (1, 1, 10_700, 10_200), (2, 2, 10_900, 10_450)],
    }
    assert swap_figures(rows, new=2, promoted_ms=PROMOTED_MS) == SwapTiming(0.9, True, 450.0)


def test_an_old_version_after_the_new_one_is_out_of_order() -> None:
    rows = {0: [(0, 2, 10_200, 10_190), (1, 1, 10_210, 10_200)]}
    assert swap_figures(rows, new=2, promoted_ms=PROMOTED_MS).ordered is False


def test_a_partition_that_never_saw_the_new_version_has_no_swap_time() -> None:
    rows = {0: [(0, 2, 10_200, 10_190)], 1: [(0, 1, 10_300, 10_290)]}
    timing = swap_figures(rows, new=2, promoted_ms=PROMOTED_MS)
    assert timing.swap_s is None
    assert timing.backlog_ms is None
