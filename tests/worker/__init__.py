"""Tests of the streaming worker (``inferloop.worker``).

pytest puts the repository root first on ``sys.path`` (``tests`` is a package), where
the source folder ``inferloop/`` shadows the installed layout that maps ``worker/`` to
``inferloop.worker``. Until the project's pytest configuration deals with it, the
installed package folder is added to ``inferloop.__path__`` here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import inferloop


def _add_installed_layout() -> None:
    repo = Path(__file__).resolve().parents[2]
    for entry in sys.path:
        candidate = Path(entry) / "inferloop"
        if Path(entry).resolve() != repo and (candidate / "worker").is_dir():
            if str(candidate) not in inferloop.__path__:
                inferloop.__path__.append(str(candidate))
            return


_add_installed_layout()
