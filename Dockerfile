# The inferloop image: every service of docker-compose.yml runs the `inferloop` command.
FROM python:3.11-slim

COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy

# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

COPY inferloop ./inferloop
RUN uv sync --frozen --no-dev --no-editable

ENV PATH=/app/.venv/bin:$PATH
USER nobody
ENTRYPOINT ["inferloop"]
CMD ["--help"]
