"""The one hash of an event id, and the stable samples of ids drawn with it.

A sample of a share of event ids is the ids whose hash falls under that share of the
hash space: the same id is always in or always out, in every process and at every
replay. The worker's shadow sample and the monitor's served sample use the plain hash
(so they pick the same ids); a salt draws a sample independent of those, as replay does
for the labels that come back.
"""

from __future__ import annotations

import hashlib

ID_HASH_SPACE = 2**64


def id_hash(event_id: str, salt: str = "") -> int:
    """A 64-bit hash of an event id (BLAKE2b, keyed by ``salt`` when one is given)."""
    digest = hashlib.blake2b(event_id.encode(), digest_size=8, key=salt.encode()).digest()
    return int.from_bytes(digest, "little")


def in_sample(event_id: str, share: float, salt: str = "") -> bool:
    """Whether ``event_id`` is in the stable sample of ``share`` (0 to 1) of all ids."""
    return share >= 1.0 or id_hash(event_id, salt) < share * ID_HASH_SPACE
