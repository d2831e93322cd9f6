"""``python -m inferloop`` is the ``inferloop`` command."""

from inferloop.cli import main

main()
