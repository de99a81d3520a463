"""Generate the Python code for protos/ (messages, .pyi stubs, gRPC stubs).

`make protos` writes into sdk/; `make protos-check` (in `make lint`) and the drift test write into a
temporary folder and compare, so the committed code is always what the protos produce. Only
protos/voltorch is compiled: protos/third_party (google.rpc, grpc.health.v1) is for clients that load
.proto files at run time, and Python takes that code from its pip packages (googleapis-common-protos,
grpcio-health-checking).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "protos"
COMMITTED = ROOT / "sdk" / "voltorch" / "v1"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "voltorch" / "v1").glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Run protoc over every proto into out_dir; return the files written."""
    import grpc_tools
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    pkg = out_dir / "voltorch" / "v1"
    (pkg / "__init__.py").write_text(
        '"""Generated code for the voltorch.v1 API (make protos). Do not edit."""\n'
    )
    return sorted(pkg.glob("*"))


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def drift(out_dir: Path, committed: Path = COMMITTED) -> list[str]:
    """Generate into out_dir and compare with the committed code: the problems found (none = in sync)."""
    generate(out_dir)
    fresh, have = _files(out_dir / "voltorch" / "v1"), _files(committed)
    if not fresh:
        return ["protoc produced nothing"]
    problems = [f"missing generated file {n}" for n in sorted(set(fresh) - set(have))]
    problems += [f"extra generated file {n}" for n in sorted(set(have) - set(fresh))]
    problems += [f"stale generated file {n}" for n in sorted(fresh) if n in have and fresh[n] != have[n]]
    return problems


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"]:
        with tempfile.TemporaryDirectory() as tmp:
            problems = drift(Path(tmp))
        for p in problems:
            print(f"protos-check: {p}", file=sys.stderr)
        if problems:
            print("protos-check: the generated code differs from protos/; run `make protos`", file=sys.stderr)
            return 1
        print("protos-check: generated code matches protos/")
        return 0
    written = generate(Path(argv[0]) if argv else ROOT / "sdk")
    print(f"generated {len(written)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
