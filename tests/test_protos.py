"""The committed generated code in sdk/voltorch/v1 is exactly what the protos produce."""

from __future__ import annotations

import shutil
from pathlib import Path

from voltorch_server import protogen

COMMITTED = protogen.COMMITTED


def test_generated_code_matches_the_protos(tmp_path: Path) -> None:
    assert protogen.drift(tmp_path) == [], "generated code is stale: run `make protos`"


def test_drift_names_a_stale_file(tmp_path: Path) -> None:
    copy = tmp_path / "committed"
    shutil.copytree(COMMITTED, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "state_pb2.py").write_bytes(b"# edited by hand\n")
    (copy / "stray_pb2.py").write_text("")
    assert protogen.drift(tmp_path / "fresh", copy) == [
        "extra generated file stray_pb2.py",
        "stale generated file state_pb2.py",
    ]


def test_every_proto_has_its_generated_modules() -> None:
    names = {p.name for p in COMMITTED.iterdir()}
    for proto in protogen.proto_files():
        stem = proto.stem
        assert {f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py"} <= names, stem
