"""The one event-id hash and the samples drawn with it: pure logic."""

from __future__ import annotations

import hashlib

from inferloop.domains.idhash import id_hash, in_sample
from inferloop.domains.replay import gets_label
from inferloop.monitor.window import sampled
from inferloop.worker.shadow import sampled_indices

IDS = [f"tx-{i}" for i in range(20_000)]


def test_the_shadow_sample_is_the_monitors_served_sample() -> None:
    shadow = {IDS[i] for i in sampled_indices(IDS, 0.1)}
    served = {i for i in IDS if sampled(id_hash(i), 0.1)}
    assert shadow == served == {i for i in IDS if in_sample(i, 0.1)}
    assert 1_800 < len(shadow) < 2_200


def test_the_label_sample_is_drawn_apart_from_the_served_sample() -> None:
    served = {i for i in IDS if in_sample(i, 0.5)}
    labelled = {i for i in IDS if gets_label(i, 0.5)}
    assert 9_600 < len(labelled) < 10_400
    # Independent draws overlap on about a quarter of the ids, the same draw on half.
    assert 4_700 < len(served & labelled) < 5_300


def test_a_salt_changes_the_hash_and_no_salt_is_the_little_endian_blake2b() -> None:
    assert id_hash("tx-1") == int.from_bytes(
        hashlib.blake2b(b"tx-1", digest_size=8).digest(), "little"
    )
    assert id_hash("tx-1", salt="label") != id_hash("tx-1")
    assert in_sample("tx-1", 1.0)
    assert not in_sample("tx-1", 0.0)
