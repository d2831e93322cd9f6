"""The live-quality monitor: labelled events re-scored by every watched version.

Labels carry the whole event, so the monitor scores each labelled event with the
champion, the challenger and (on probation) the previous champion: all of them on the
same events, paired, with no join over predictions. Its state (Kafka offsets, the
window of labelled events, counters, the served sample) lives in Redis and moves in one
transaction per batch with the offsets consumed, so a crash neither loses nor double
counts. ``service.py`` has the loop; ``reader.py`` the Kafka side; ``intake.py`` a
batch into state changes; ``window.py`` the bounded window; ``state.py`` its storage;
``scoring.py`` the watched versions; ``evaluation.py`` the status snapshot;
``decisions.py`` the policy's inputs and its actions (``policy.py``, ``paired.py``,
``figures.py`` and ``drift.py`` are the pure decision logic).
"""
