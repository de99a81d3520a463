"""The import rules of the tree, read from the source with `ast` (nothing is imported).

- Components are plain Python: they never import grpc or the generated protobuf modules.
- The SDK never imports the server.
- A `_private` module is imported only from inside its own package; tests and bench go through faces.
- Outside a component package, only the package itself (its `__init__`, the face) is imported.
- Components hold no SQL and import no database driver: their SQL is in storage/stores, behind the store
  interface each component declares.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Where each top-level package's source lives (the folder that holds the package).
SOURCES = {"voltorch": ROOT / "sdk", "voltorch_server": ROOT / "server", "tests": ROOT, "bench": ROOT}
OURS = frozenset(SOURCES)
GENERATED = "voltorch.v1"
COMPONENTS = "voltorch_server.components"
# The one known exception, with its way out: the tracing interceptor rebuilds OpenTelemetry's dropped
# span by hand, and a test compares it with the SDK's; issue 10 item 6 (public OpenTelemetry APIs only)
# removes that code, and this exception with it.
KNOWN = frozenset({("tests.server.test_fast_paths", "voltorch_server.servicers._tracing")})

SQL_START = re.compile(
    r"\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE|UPSERT|CREATE|ALTER|DROP|WITH|PRAGMA|BEGIN|COMMIT|ROLLBACK"
    r"|SAVEPOINT|VACUUM|ANALYZE|LISTEN|NOTIFY|LOCK|SET TRANSACTION)\s"  # a keyword alone is a word ("DELETE")
)
DRIVERS = frozenset({"sqlite3", "psycopg", "psycopg_pool", "psycopg2"})


def module_name(path: Path) -> str:
    for top, base in SOURCES.items():
        if path.is_relative_to(base / top):
            parts = path.relative_to(base).with_suffix("").parts
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(f"{path} is outside the tree")


def source_files() -> Iterator[Path]:
    for top, base in SOURCES.items():
        for path in sorted((base / top).rglob("*.py")):
            name = module_name(path)
            if not name.startswith(GENERATED + ".") and "__pycache__" not in path.parts:
                yield path


def is_package(module: str) -> bool:
    top = module.split(".")[0]
    return top in SOURCES and (SOURCES[top] / module.replace(".", "/") / "__init__.py").exists()


def is_module(module: str) -> bool:
    top = module.split(".")[0]
    return is_package(module) or (
        top in SOURCES and (SOURCES[top] / (module.replace(".", "/") + ".py")).exists()
    )


def imported(importer: str, is_pkg: bool, tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every module an import statement names, relative imports resolved, `from m import sub` included."""
    here = importer.split(".") if is_pkg else importer.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here[: len(here) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                if is_module(f"{base}.{alias.name}"):
                    yield node.lineno, f"{base}.{alias.name}"


def inside(importer: str, package: str) -> bool:
    return importer == package or importer.startswith(package + ".")


def violations(importer: str, is_pkg: bool, source: str) -> list[str]:
    found = []
    for line, target in imported(importer, is_pkg, ast.parse(source)):
        where = f"{importer}:{line} imports {target}"
        parts = target.split(".")
        if inside(importer, COMPONENTS) and (
            parts[0] == "grpc" or inside(target, GENERATED) or inside(target, "google.protobuf")
        ):
            found.append(f"{where}: components never import grpc or protobuf types")
        if inside(importer, "voltorch") and parts[0] == "voltorch_server":
            found.append(f"{where}: the SDK never imports the server")
        if parts[0] not in OURS or (importer, target) in KNOWN:
            continue
        for i, part in enumerate(parts):
            package = ".".join(parts[:i])
            if part.startswith("_") and not part.startswith("__") and not inside(importer, package):
                found.append(f"{where}: private to {package}")
                break
        package = ".".join(parts[:3])
        deep = inside(target, COMPONENTS) and len(parts) > 3 and is_package(package)
        if deep and not inside(importer, package) and not is_package(target):
            found.append(f"{where}: import the face {package} instead")
    return found


def sql_violations(module: str, source: str) -> list[str]:
    """SQL in a component: a string constant (an f-string's literal parts too) that starts a statement, or
    an import of a database driver."""
    if not inside(module, COMPONENTS):
        return []
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_START.match(node.value):
            found.append(f"{module}:{node.lineno} holds SQL ({node.value.strip()[:40]!r}): put it in a store")
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] in DRIVERS and not getattr(node, "level", 0):
                    found.append(
                        f"{module}:{node.lineno} imports {name}: components reach the database through a store"
                    )
    return found


def test_components_hold_no_sql() -> None:
    found = []
    for path in source_files():
        found += sql_violations(module_name(path), path.read_text())
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        'ROWS = "SELECT * FROM kv WHERE key = ?"',
        "def f(tx):\n    tx.execute(\"UPDATE meta SET value = ? WHERE name = 'revision'\", (1,))",
        'def f(db, col):\n    return db.query(f"SELECT {col} FROM events")',
        'Q = (\n    "  INSERT INTO errors(id)"\n    " VALUES (?)"\n)',
        'db.query_one("PRAGMA schema_version")',
        "import sqlite3",
        "from psycopg import errors",
    ],
)
def test_the_sql_rule_catches_sql_in_a_component(source: str) -> None:
    assert sql_violations("voltorch_server.components.state._store", source)


def test_the_sql_rule_passes_plain_strings_and_other_packages() -> None:
    plain = 'MSG = "select a key"\nPUT, DELETE = "PUT", "DELETE"\nDOC = "Updates the cache"'
    assert not sql_violations("voltorch_server.components.state._store", plain)
    assert not sql_violations("voltorch_server.storage.stores.state", 'Q = "SELECT 1"\nimport sqlite3')


def test_the_tree_keeps_the_import_rules() -> None:
    found = []
    for path in source_files():
        found += violations(module_name(path), path.name == "__init__.py", path.read_text())
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("importer", "source", "rule"),
    [
        ("voltorch_server.components.state._store", "import grpc", "never import grpc"),
        ("voltorch_server.components.events._log", "from voltorch.v1 import events_pb2", "protobuf"),
        ("voltorch._client", "from voltorch_server.errors import NotFound", "never imports the server"),
        ("tests.server.test_x", "from voltorch_server.components.state import _store", "private"),
        ("voltorch_server.servicers.state", "from ..components.state._store import KeyValue", "private"),
        ("voltorch_server.app", "from .servicers._auth import parse_tokens", "private"),
        ("bench.suite_x", "from voltorch._convert import to_value", "private"),
    ],
)
def test_each_rule_catches_its_violation(importer: str, source: str, rule: str) -> None:
    assert any(rule in v for v in violations(importer, False, source))


def test_components_is_packages_only() -> None:
    """One package per concept (and `shared/` for what they share): no module loose beside them."""
    folder = ROOT / "server" / "voltorch_server" / "components"
    assert sorted(p.name for p in folder.glob("*.py")) == ["__init__.py"]
    assert all(
        (p / "__init__.py").is_file() for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__"
    )


def test_a_shared_module_is_reached_through_its_face() -> None:
    rule = "private"
    assert any(
        rule in v
        for v in violations(
            "voltorch_server.components.state._store", False, "from ..shared._follow import Follower"
        )
    )


def test_imports_inside_a_package_and_through_faces_pass() -> None:
    assert not violations("voltorch_server.components.state._store", False, "from ._kv_cache import KVCache")
    assert not violations("voltorch_server.components.state._store", False, "from ..shared import Follower")
    assert not violations("voltorch_server.servicers.state", False, "from ..components.state import KeyValue")
    assert not violations("tests.server.test_x", False, "from voltorch_server.components import Closed")
