"""``inferloop registry``: list, inspect, promote, roll back, verify, export and import
model versions.

A version is named ``NAME:VERSION`` (``emails:3``) or ``NAME@ALIAS`` (``emails@champion``,
``emails@latest``). Every command prints a table, or JSON with ``--json``; an error is one
line and exit code 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from inferloop.cli import settings_of
from inferloop.cli.output import json_option, print_json, print_table
from inferloop.registry.acl import ROLES

if TYPE_CHECKING:
    from inferloop.registry import HistoryEntry, ModelVersion, Registry

_METRICS_SHOWN = 3


def _open(ctx: click.Context) -> Registry:
    # Imported when a command runs: the registry pulls in scikit-learn, which
    # `inferloop --help` does not need.
    from inferloop.registry import Registry

    registry = Registry.from_settings(settings_of(ctx))
    ctx.call_on_close(registry.close)
    return registry


@dataclass(frozen=True)
class Ref:
    """``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS`` as typed."""

    name: str
    version: int | None = None
    alias: str | None = None

    def resolve(self, registry: Registry, default_alias: str = "champion") -> int:
        """The version number this names (the default alias for a bare name)."""
        from inferloop.registry import AliasNotFoundError

        if self.version is not None:
            return self.version
        alias = self.alias or default_alias
        if alias == "latest":
            latest = registry.get_model(self.name).latest_version
            if latest is None:
                raise AliasNotFoundError(f"{self.name} has no versions")
            return latest
        target = registry.resolve(self.name, alias)
        if target is None:
            registry.get_model(self.name)  # an unknown model says so
            raise AliasNotFoundError(f"{self.name}@{alias} is not set")
        return target.version


class RefType(click.ParamType[Ref]):
    """Click type for ``NAME[:VERSION|@ALIAS]``."""

    name = "NAME[:VERSION|@ALIAS]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Ref:
        ref = _parse_ref(str(value))
        if ref is None:
            self.fail(f"{value!r} is not NAME, NAME:VERSION or NAME@ALIAS", param, ctx)
        return ref


def _parse_ref(text: str) -> Ref | None:
    if "@" in text:
        name, _, alias = text.partition("@")
        return Ref(name, alias=alias) if name and alias else None
    if ":" in text:
        name, _, number = text.partition(":")
        number = number.removeprefix("v")
        return Ref(name, version=int(number)) if name and number.isdigit() else None
    return Ref(text) if text else None


REF = RefType()
reason_option = click.option("--reason", required=True, help="Why: kept in the history.")
reviewed_option = click.option(
    "--reviewed",
    is_flag=True,
    help="The version was rolled back and has since been reviewed: promote it anyway "
    "(recorded in the history).",
)


@click.group()
def registry() -> None:
    """Model versions in the Redis registry: inspect, promote, roll back, verify, move."""


# -- reading ----------------------------------------------------------------------------
@registry.command("list")
@click.argument("name", required=False)
@json_option
@click.pass_context
def list_(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """The registered models, or the versions of model NAME."""
    reg = _open(ctx)
    if name is None:
        models = reg.list_models()
        if as_json:
            print_json(models)
            return
        rows = [
            {
                "model": m.name,
                "champion": m.aliases.get("champion"),
                "aliases": ", ".join(f"{a}=v{t.version}" for a, t in m.aliases.items()),
                "versions": m.version_count,
                "latest": m.latest_version,
                "created": _when(m.created_at),
            }
            for m in models
        ]
        print_table(rows, ["model", "champion", "aliases", "versions", "latest", "created"])
        return
    versions = reg.list_versions(name)
    if as_json:
        print_json(versions)
        return
    print_table([_version_row(v) for v in versions], _VERSION_COLUMNS, title=f"model {name}")


_VERSION_COLUMNS = (
    "version", "status", "aliases", "created", "created by", "threshold", "metrics", "digest",
    "artifact",
)  # fmt: skip


def _version_row(v: ModelVersion) -> dict[str, Any]:
    shown = list(v.metrics.items())[:_METRICS_SHOWN]
    return {
        "version": v.version,
        "status": v.status,
        "aliases": ", ".join(v.aliases),
        "created": _when(v.created_at),
        "created by": v.created_by,
        "threshold": f"{v.threshold:.4g}",
        "metrics": " ".join(f"{k}={_number(x)}" for k, x in shown),
        "digest": v.artifact_digest[:12],
        "artifact": f"{v.artifact_size / 1e6:.2f} MB" if v.has_artifact else "deleted",
    }


@registry.command()
@click.argument("ref", type=REF)
@json_option
@click.pass_context
def show(ctx: click.Context, ref: Ref, as_json: bool) -> None:
    """One version (NAME:VERSION, NAME@ALIAS; a bare NAME shows its champion)."""
    reg = _open(ctx)
    version = reg.get_version(ref.name, ref.resolve(reg))
    if as_json:
        print_json(version)
        return
    print_table(_details(version), ["field", "value"], title=f"{version.name} v{version.version}")


def _details(v: ModelVersion) -> list[dict[str, Any]]:
    fields: dict[str, Any] = {
        "status": v.status,
        "aliases": ", ".join(v.aliases) or "-",
        "domain": v.domain,
        "created": f"{_when(v.created_at)} by {v.created_by}",
        "threshold": v.threshold,
        "input schema version": v.input_schema_version,
        "artifact": (
            f"sha256 {v.artifact_digest}, {v.artifact_size:,} bytes ({v.artifact_compression})"
            + ("" if v.has_artifact else f", DELETED {_when(v.artifact_deleted_at)}")
        ),
        "signed by key": v.signing_key_id or "UNSIGNED",
        "libraries": " ".join(f"{k}={x}" for k, x in v.libraries.items()),
        "load (at registration)": (
            f"unpickle {v.load_time_s:.3f} s, {v.resident_bytes / 1e6:.1f} MB resident"
        ),
        "golden sample": f"{len(v.golden.events)} events",
        "metrics": _compact(v.metrics),
        "champion metrics": _compact(v.champion_metrics),
        "params": _compact(v.params),
        "lineage": _compact(v.lineage),
        "tags": _compact(v.tags),
        "description": v.description,
        "imported from": _compact(v.imported_from),
    }
    return [{"field": k, "value": value} for k, value in fields.items() if value not in ("", None)]


@registry.command()
@click.argument("name")
@click.option("--limit", default=50, show_default=True, help="Newest entries to show.")
@json_option
@click.pass_context
def history(ctx: click.Context, name: str, limit: int, as_json: bool) -> None:
    """Alias moves, rejections and deletions of model NAME, newest first."""
    entries = _open(ctx).history(name, limit=limit)
    if as_json:
        print_json(entries)
        return
    print_table([_history_row(e) for e in entries], _HISTORY_COLUMNS, title=f"history of {name}")


_HISTORY_COLUMNS = (
    "time",
    "action",
    "alias",
    "from",
    "to",
    "version",
    "actor",
    "user",
    "reason",
    "reviewed",
)


def _history_row(e: HistoryEntry) -> dict[str, Any]:
    return {
        "time": _when(e.time),
        "action": e.action,
        "alias": e.alias,
        "from": e.from_target,
        "to": e.to_target,
        "version": e.version,
        "actor": e.actor,
        "user": e.user,
        "reason": e.reason,
        "reviewed": "yes" if e.reviewed else "",
    }


# -- moving aliases ---------------------------------------------------------------------
@registry.command()
@click.argument("name")
@click.argument("version", type=int)
@reason_option
@click.option(
    "--expect",
    "expect",
    default=None,
    help="The champion this move expects (a version number, or 'none'); default: the "
    "champion as read now. Another move in between makes this one fail.",
)
@click.option("--digest", default=None, help="Refuse unless VERSION has this artifact digest.")
@reviewed_option
@json_option
@click.pass_context
def promote(
    ctx: click.Context,
    *,
    name: str,
    version: int,
    reason: str,
    expect: str | None,
    digest: str | None,
    reviewed: bool,
    as_json: bool,
) -> None:
    """Make VERSION the champion of model NAME (a compare-and-set).

    VERSION is verified first as a worker would load it (signature, digest, golden
    scores); a version that fails is refused and nothing moves. A rejected version is
    never promoted; a rolled-back one only with --reviewed."""
    reg = _open(ctx)
    expected: Any
    if expect is None:
        expected = reg.resolve(name)
    elif expect.lower() == "none":
        expected = None
    elif expect.removeprefix("v").isdigit():
        expected = int(expect.removeprefix("v"))
    else:
        raise click.BadParameter(
            f"{expect!r} is not a version number or 'none'", param_hint="--expect"
        )
    entry = reg.promote(
        name, version, expected_current=expected, reason=reason, digest=digest, reviewed=reviewed
    )
    _moved(entry, as_json)


@registry.command("promote-challenger")
@click.argument("name")
@reason_option
@reviewed_option
@json_option
@click.pass_context
def promote_challenger(
    ctx: click.Context, name: str, reason: str, reviewed: bool, as_json: bool
) -> None:
    """Make the challenger of model NAME its champion and remove the challenger alias
    (one atomic step, verified first; the old champion is the rollback target)."""
    _moved(_open(ctx).promote_challenger(name, reason=reason, reviewed=reviewed), as_json)


@registry.command()
@click.argument("name")
@reason_option
@json_option
@click.pass_context
def rollback(ctx: click.Context, name: str, reason: str, as_json: bool) -> None:
    """Move the champion of model NAME back to the previous champion (verified first);
    the version rolled back from is marked rolled_back."""
    _moved(_open(ctx).rollback(name, reason), as_json)


@registry.command()
@click.argument("name")
@click.argument("version", type=int)
@reason_option
@json_option
@click.pass_context
def reject(ctx: click.Context, name: str, version: int, reason: str, as_json: bool) -> None:
    """Mark VERSION of model NAME rejected, so it cannot be promoted."""
    entry = _open(ctx).reject(name, version, reason)
    if as_json:
        print_json(entry)
    elif entry is None:
        click.echo(f"{name} v{version} was rejected already")
    else:
        click.echo(f"{name} v{version} rejected: {reason}")


def _moved(entry: HistoryEntry, as_json: bool) -> None:
    if as_json:
        print_json(entry)
        return
    source = entry.from_target or "nothing"
    reviewed = ", reviewed" if entry.reviewed else ""
    click.echo(
        f"{entry.alias}: {source} -> {entry.to_target} ({entry.action}{reviewed}: {entry.reason})"
    )


# -- integrity and storage --------------------------------------------------------------
@registry.command()
@click.argument("name", required=False)
@json_option
@click.pass_context
def verify(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Check the signature and digest of every stored version (of NAME, or of all models);
    nothing is unpickled. Exit code 1 when any fails."""
    results = _open(ctx).verify_all(name)
    if as_json:
        print_json(results)
    else:
        rows = [
            {
                "model": r.name,
                "version": r.version,
                "verified": "ok" if r.ok else "FAILED",
                "key": r.signing_key_id or "-",
                "detail": r.detail,
            }
            for r in results
        ]
        print_table(rows, ["model", "version", "verified", "key", "detail"])
    failed = sum(not r.ok for r in results)
    if failed:
        raise click.ClickException(f"{failed} of {len(results)} versions failed verification")


@registry.command()
@click.argument("ref", type=REF)
@reason_option
@json_option
@click.pass_context
def delete(ctx: click.Context, ref: Ref, reason: str, as_json: bool) -> None:
    """Delete the artifact of NAME:VERSION, keeping its metadata as a tombstone (refused
    while an alias points at it or it is the rollback target)."""
    if ref.version is None:
        raise click.BadParameter("name one version: NAME:VERSION", param_hint="REF")
    entry = _open(ctx).delete_version(ref.name, ref.version, reason=reason)
    if as_json:
        print_json(entry)
    elif entry is None:
        click.echo(f"{ref.name} v{ref.version}: the artifact was deleted already")
    else:
        click.echo(f"{ref.name} v{ref.version}: artifact deleted, metadata kept")


@registry.command()
@click.argument("name")
@click.option("--keep", type=click.IntRange(min=1), default=None, help="Default: the setting.")
@json_option
@click.pass_context
def prune(ctx: click.Context, name: str, keep: int | None, as_json: bool) -> None:
    """Apply retention to model NAME: delete the artifacts of all but the newest versions,
    never an aliased one nor the rollback target."""
    deleted = _open(ctx).apply_retention(name, keep=keep)
    if as_json:
        print_json(deleted)
    else:
        click.echo(f"{name}: deleted the artifacts of {deleted or 'no versions'}")


@registry.command("export")
@click.argument("ref", type=REF)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def export_(ctx: click.Context, ref: Ref, file: Path) -> None:
    """Write a version (signed manifest, signature, state, artifact) to FILE, after
    verifying it."""
    reg = _open(ctx)
    stored = reg.export_version(ref.name, ref.resolve(reg), file)
    click.echo(f"exported {stored.name} v{stored.version} to {file}")


@registry.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--trust-key",
    "trust_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also trust this public key (PEM) for the file's signature.",
)
@json_option
@click.pass_context
def import_(ctx: click.Context, file: Path, trust_keys: tuple[Path, ...], as_json: bool) -> None:
    """Store the version exported to FILE as a new version, signed by this registry's key;
    its signature, digest and golden sample are checked first."""
    from inferloop.registry.signing import Verifier

    trust = Verifier.from_files(trust_keys) if trust_keys else None
    stored = _open(ctx).import_version(file, trust=trust)
    if as_json:
        print_json(stored)
        return
    origin = stored.imported_from or {}
    click.echo(
        f"imported {origin.get('name')} v{origin.get('version')} from {file} as "
        f"{stored.name} v{stored.version}"
    )


@registry.command()
@click.argument("name")
@click.argument("version", type=int)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write the files into.",
)
@click.pass_context
def report(ctx: click.Context, name: str, version: int, out_dir: Path) -> None:
    """Write the report files stored with VERSION of model NAME into a directory."""
    files = _open(ctx).get_report(name, version)
    if not files:
        click.echo(f"{name} v{version} has no report")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for file_name, data in files.items():
        # Names come from Redis: never let one climb out of the directory.
        if Path(file_name).name != file_name or file_name in (".", ".."):
            raise click.ClickException(f"refusing report file name {file_name!r}")
        (out_dir / file_name).write_bytes(data)
        click.echo(str(out_dir / file_name))


@registry.command()
@click.argument("role", type=click.Choice(ROLES))
@click.option("--user", default=None, help="User name (default: inferloop-ROLE).")
@click.pass_context
def acl(ctx: click.Context, role: str, user: str | None) -> None:
    """Print the Redis ACL SETUSER command for ROLE under the configured key prefix
    (replace PASSWORD)."""
    from inferloop.registry.acl import setuser_line

    prefix = settings_of(ctx).redis.key_prefix
    click.echo(setuser_line(role, user or f"inferloop-{role}", prefix))


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _compact(value: Any) -> str | None:
    if not value:
        return None
    return json.dumps(value, sort_keys=True, default=str)


COMMANDS = (registry,)
