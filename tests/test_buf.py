"""The protos pass `buf lint`, and `buf breaking` against the last release's image catches breaking edits.

buf comes from the @bufbuild/buf npm package (tools/buf, installed by `make test`); see npm_tools.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import npm_tools
import pytest

ROOT = npm_tools.ROOT
RELEASES = ROOT / "protos" / "releases"


def _release_image() -> Path:
    images = sorted(RELEASES.glob("v*.binpb"), key=lambda p: [int(n) for n in re.findall(r"\d+", p.stem)])
    assert images, "no release image in protos/releases"
    return images[-1]


def _buf(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(npm_tools.buf()), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_protos_pass_lint_and_are_compatible_with_the_last_release() -> None:
    lint = _buf("lint", cwd=ROOT)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    breaking = _buf("breaking", "--against", str(_release_image()), cwd=ROOT)
    assert breaking.returncode == 0, breaking.stdout + breaking.stderr


def test_third_party_protos_are_not_linted() -> None:
    files = _buf("ls-files", cwd=ROOT)
    assert files.returncode == 0, files.stderr
    listed = files.stdout.split()
    assert "protos/voltorch/v1/state.proto" in listed
    assert not [f for f in listed if "third_party" in f]


@pytest.mark.parametrize(
    ("proto", "before", "after", "complaint"),
    [
        # renumbered: KeyValue.version 3 -> 30
        (
            "state.proto",
            "int64 version = 3;",
            "int64 version = 30;",
            'field "3" with name "version" on message "KeyValue" was deleted',
        ),
        # removed: TraceContext.tracestate
        ("common.proto", "string tracestate = 2;", "", 'Previously present field "2" with name "tracestate"'),
        # field type changed: Event.sequence int64 -> string
        (
            "events.proto",
            "int64 sequence = 1;  // output",
            "string sequence = 1;  // output",
            '"sequence" on message "Event" changed type from "int64" to "string"',
        ),
    ],
)
def test_a_breaking_edit_fails_buf_breaking(
    tmp_path: Path, proto: str, before: str, after: str, complaint: str
) -> None:
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "protos" / "voltorch", tmp_path / "protos" / "voltorch")
    path = tmp_path / "protos" / "voltorch" / "v1" / proto
    text = path.read_text()
    assert text.count(before) == 1, f"{before!r} is not in {proto} once"
    path.write_text(text.replace(before, after))

    unchanged = _buf("lint", cwd=tmp_path)  # the copy is a valid module: only the edit can fail below
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    result = _buf("breaking", "--against", str(_release_image()), cwd=tmp_path)
    assert result.returncode != 0, f"buf breaking accepted: {before!r} -> {after!r}"
    assert complaint in result.stdout, result.stdout + result.stderr
