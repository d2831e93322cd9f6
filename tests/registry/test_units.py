"""Pure logic of the registry: names, alias targets, JSON values, signatures, exports."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest

from inferloop.registry import (
    AliasTarget,
    BadSignatureError,
    ExportFormatError,
    InvalidNameError,
    InvalidVersionError,
    MissingSignatureError,
    RegistryStorageError,
    ReservedAliasError,
    SigningKeyError,
    UnknownSigningKeyError,
)
from inferloop.registry.acl import ROLES, acl_rules
from inferloop.registry.artifact import deep_size_bytes
from inferloop.registry.entities import check_alias, check_model_name
from inferloop.registry.manifest import canonical_json, to_json_value
from inferloop.registry.signing import Signer, Verifier, generate_key_pair, load_public_key
from inferloop.registry.transfer import read


def test_alias_targets_round_trip_and_refuse_garbage() -> None:
    target = AliasTarget(12, "ab" * 32)
    assert AliasTarget.decode(target.encode()) == target
    assert AliasTarget.decode(target.encode().encode()) == target
    assert AliasTarget.decode(b"") is None
    assert str(target) == "v12 (abababababab)"
    with pytest.raises(RegistryStorageError):
        AliasTarget.decode("twelve abc")


@pytest.mark.parametrize("alias", ["latest", "v1", "V1", "12"])
def test_reserved_aliases(alias: str) -> None:
    with pytest.raises(ReservedAliasError):
        check_alias(alias)


def test_names() -> None:
    assert check_alias("challenger") == "challenger"
    assert check_model_name("emails") == "emails"
    for bad in ("", "a{b}", "a:b", "a b", "-x"):
        with pytest.raises(InvalidNameError):
            check_model_name(bad)


def test_json_values_are_plain_and_canonical() -> None:
    value = {"b": np.float32(0.5), "a": (1, np.int64(2)), "n": float("inf"), "x": np.arange(2)}
    plain = to_json_value(value, "metrics")
    assert plain == {"b": 0.5, "a": [1, 2], "n": None, "x": [0, 1]}
    assert canonical_json(plain) == b'{"a":[1,2],"b":0.5,"n":null,"x":[0,1]}'
    with pytest.raises(InvalidVersionError, match=r"metrics\.when"):
        to_json_value({"when": object()}, "metrics")


def test_signatures_need_a_trusted_key(tmp_path: Path) -> None:
    ours = generate_key_pair(tmp_path, "ours")
    theirs = generate_key_pair(tmp_path, "theirs")
    signer = Signer.from_file(ours.private_path)
    verifier = Verifier.from_files([ours.public_path])
    signature = signer.sign(b"manifest")

    assert signer.key_id == ours.key_id
    assert verifier.verify(b"manifest", signature, ours.key_id, "m") == ours.key_id
    with pytest.raises(BadSignatureError):
        verifier.verify(b"manifest!", signature, ours.key_id, "m")
    with pytest.raises(MissingSignatureError):
        verifier.verify(b"manifest", None, ours.key_id, "m")
    other = Signer.from_file(theirs.private_path).sign(b"manifest")
    with pytest.raises(UnknownSigningKeyError):
        verifier.verify(b"manifest", other, theirs.key_id, "m")
    with pytest.raises(BadSignatureError):
        verifier.verify(b"manifest", other, ours.key_id, "m")


def test_key_files(tmp_path: Path) -> None:
    pair = generate_key_pair(tmp_path, "k")
    assert stat.S_IMODE(pair.private_path.stat().st_mode) == 0o600
    with pytest.raises(SigningKeyError, match="exists"):
        generate_key_pair(tmp_path, "k")
    with pytest.raises(SigningKeyError, match="not a PEM public key"):
        load_public_key(pair.private_path)
    with pytest.raises(SigningKeyError, match="cannot read"):
        Signer.from_file(tmp_path / "missing.key")


def test_an_export_with_unexpected_members_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("../../etc/passwd")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ExportFormatError, match="unexpected member"):
        read(path, 1024)
    (tmp_path / "junk.tar").write_bytes(b"not a tar")
    with pytest.raises(ExportFormatError):
        read(tmp_path / "junk.tar", 1024)


def test_resident_size_counts_array_buffers_behind_views() -> None:
    base = np.zeros(1_000_000)
    assert deep_size_bytes({"view": base[10:]}) >= base.nbytes


def test_every_role_has_rules() -> None:
    for role in ROLES:
        assert acl_rules(role, "p").startswith("resetkeys ")
    with pytest.raises(ValueError, match="admin"):
        acl_rules("admin", "p")
