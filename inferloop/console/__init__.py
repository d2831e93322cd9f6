"""The operator console: an ASGI app (Starlette, server-side Jinja2 templates).

It reads the registry, the monitor's status keys, the retrain status and Kafka's group
offsets, and acts only through the registry, the retrain-trigger stream and Kafka:
never the worker or the retrain package (an import contract holds it).

- ``auth``: tokens (salted scrypt hashes), roles, sessions, CSRF, login rate limit.
- ``guards``: Host allowlist, Origin check and security headers (CSP without inline script).
- ``views``: what each page shows, read from Redis and Kafka.
- ``app``: the routes; ``serve``: uvicorn, refusing a non-loopback bind without TLS.
"""
