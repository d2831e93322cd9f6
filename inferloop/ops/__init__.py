"""Operations shared by the CLI and the console: reading what the services leave behind.

Core-level (it imports the core, the domains and the registry only), so the console
can show and act on the loop without importing the worker or the retrain service.

- ``dlq``: browse a domain's dead letters and redrive chosen ones to their source.
- ``lag``: a consumer group's lag per partition, from the offsets committed in Kafka.
- ``retrain_status``: the retrain status hash and lock, read as plain records.
- ``letters``: the dead-letter topic's header names (the worker writes them).
"""
