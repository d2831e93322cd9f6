"""Where a version comes from besides its data: the code, the locked dependencies, the config.

The lineage of each version records the commit of the code that trained it, the hash
of ``uv.lock`` and a hash of the training configuration, so a rebuild can tell whether
it runs the same recipe on the same data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The repository this code runs from (an editable install links back into it).
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


@cache
def code_commit(root: Path = _SOURCE_ROOT) -> str | None:
    """The git commit of the running code, ``+dirty`` when it has local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("no git commit for %s: %s", root, exc)
        return None
    return f"{head}+dirty" if status else head


@cache
def lock_file_sha256(root: Path = _SOURCE_ROOT) -> str | None:
    """SHA-256 of ``uv.lock`` beside the code, or None when it runs from an install."""
    path = root / "uv.lock"
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def config_sha256(config: dict[str, Any]) -> str:
    """SHA-256 of ``config`` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
