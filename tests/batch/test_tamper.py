"""``inferloop score`` refuses a tampered champion as a worker does, before it reads or
writes anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from inferloop.registry import Registry
from inferloop.settings import Settings
from tests.batch.helpers import score, write_lines
from tests.worker.conftest import Champion
from tests.worker.factories import Fitted, tx_bytes


def test_a_flipped_artifact_byte_is_refused_and_nothing_is_written(
    wsettings: Settings,
    champion: Champion,
    model_v1: Fitted,
    registry: Registry,
    tmp_path: Path,
) -> None:
    version = champion(model_v1).version
    client = redis.Redis.from_url(wsettings.redis.url)
    key = registry.keys.artifact("transactions", version)
    stored: Any = client.get(key)
    data = bytearray(stored)
    data[len(data) // 2] ^= 0x01
    client.set(key, bytes(data))
    client.close()
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(source, [tx_bytes(i) for i in range(10)])

    result = score(wsettings, "transactions", "--input", str(source), "--output", str(out))

    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert "digest" in line
    assert f"v{version}" in line
    assert not out.exists()
