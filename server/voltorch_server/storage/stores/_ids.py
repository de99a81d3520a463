"""SQL shared by several stores."""

from __future__ import annotations


def carrying_ids(trace_ids: set[str], correlation_ids: set[str]) -> tuple[str, list[str]]:
    """SQL condition (and parameters) for a row (error or event) carrying any of the ids; '' for none."""
    clauses, params = [], []
    for column, ids in (("trace_id", trace_ids), ("correlation_id", correlation_ids)):
        if ids:
            # `!= ''` lets SQLite use the partial index on the column (see events._INDEXED).
            clauses.append(f"({column} IN ({','.join('?' * len(ids))}) AND {column} != '')")
            params.extend(sorted(ids))
    return " OR ".join(clauses), params
