"""What differs between the SQL of SQLite and PostgreSQL, as one small object each backend's handle carries
(`Database.dialect`). The stores (storage/stores) write every statement once, in the SQL both speak, and
take from here only the pieces that must differ, so there is one query per operation, never two copies."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    name: str
    # Appended to a SELECT whose row must stay locked until COMMIT. SQLite needs nothing: its one writer
    # holds the database lock for the whole transaction.
    lock_row: str
    # Appended to a SELECT of work to claim: rows another transaction holds are passed over, not waited for
    # (PostgreSQL's queue idiom). SQLite's one writer never meets a held row.
    skip_locked: str
    # The column that orders a table's rows by insertion, exactly (SQLite's rowid; a serial column).
    insertion_order: str
    # A statement that only says the database answers.
    ping: str
    # The operator matching a type glob, and the glob as its pattern: SQLite's GLOB takes `*`/`?` as they
    # are; PostgreSQL has no GLOB, so a glob becomes a LIKE pattern (a literal `_` escaped first).
    glob_operator: str
    # The rows (column `value`) of a JSON array held as text in a column: SQLite's json_each, PostgreSQL's
    # json_array_elements_text (its output column is named value too).
    json_array_elements: str

    def json_array_has(self, column: str) -> str:
        return f"EXISTS (SELECT 1 FROM {self.json_array_elements.format(column)} AS e WHERE e.value = ?)"

    def glob_pattern(self, glob: str) -> str:
        if self.glob_operator == "GLOB":
            return glob
        return glob.replace("_", "\\_").replace("*", "%").replace("?", "_")


SQLITE = Dialect(
    name="sqlite",
    lock_row="",
    skip_locked="",
    insertion_order="rowid",
    ping="PRAGMA schema_version",
    glob_operator="GLOB",
    json_array_elements="json_each({})",
)
POSTGRES = Dialect(
    name="postgres",
    lock_row=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    insertion_order="seq",
    ping="SELECT 1",
    glob_operator="LIKE",
    json_array_elements="json_array_elements_text({}::json)",
)
