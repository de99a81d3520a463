"""The committed generated code in sdk/voltorch/v1 is exactly what the protos produce."""

from __future__ import annotations

from pathlib import Path

from voltorch_server import protogen

COMMITTED = protogen.ROOT / "sdk" / "voltorch" / "v1"


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_matches_the_protos(tmp_path: Path) -> None:
    protogen.generate(tmp_path)
    fresh = _files(tmp_path / "voltorch" / "v1")
    committed = _files(COMMITTED)
    assert fresh, "protoc produced nothing"
    assert sorted(committed) == sorted(fresh), "extra or missing generated files; run `make protos`"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"generated code is stale, run `make protos`: {stale}"


def test_every_proto_has_its_generated_modules() -> None:
    names = set(_files(COMMITTED))
    for proto in protogen.proto_files():
        stem = proto.stem
        assert {f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py"} <= names, stem
