"""Generate the Python code for protos/ (messages, .pyi stubs, gRPC stubs).

`make protos` writes into sdk/; the drift test writes into a temporary folder and compares, so the
committed code is always what the protos produce.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "protos"


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


if __name__ == "__main__":
    written = generate(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "sdk"))
    print(f"generated {len(written)} files")
