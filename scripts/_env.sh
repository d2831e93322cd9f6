# Sourced by the scripts in this folder: make sure uv and the locked virtualenv exist.
# Nothing here needs root except installing Debian's redis-server when it is missing.

UV_VERSION="0.13.9"
INFERLOOP_TOOLS="${XDG_CACHE_HOME:-$HOME/.cache}/inferloop/tools"

# Trust the platform's certificate store (where a TLS-inspecting proxy's CA lives), as
# pip and Maven do, rather than uv's bundled roots.
export UV_SYSTEM_CERTS="${UV_SYSTEM_CERTS:-1}"

ensure_uv() {
  if command -v uv >/dev/null 2>&1; then
    UV="$(command -v uv)"
  elif [ -x "$INFERLOOP_TOOLS/bin/uv" ]; then
    UV="$INFERLOOP_TOOLS/bin/uv"
  else
    echo "==> installing uv $UV_VERSION into $INFERLOOP_TOOLS" >&2
    python3 -m venv "$INFERLOOP_TOOLS"
    "$INFERLOOP_TOOLS/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
    UV="$INFERLOOP_TOOLS/bin/uv"
  fi
  export UV
}

ensure_venv() {
  ensure_uv
  echo "==> installing the locked dependencies (uv sync --frozen)" >&2
  # --inexact: what another script added to the shared .venv (the bench extra) stays, so
  # ./scripts/test does not take confluent-kafka away from ./scripts/bench. CI starts
  # from a clean clone, where it makes no difference.
  "$UV" sync --frozen --quiet --inexact "$@"
}
