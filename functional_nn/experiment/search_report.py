"""Grid search reports: the table of settings (CSV and markdown).

Rows are plain dicts (column -> value), one per setting; their plots are in
:mod:`functional_nn.experiment.plots`.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np


# --------------------------------------------------------------------------
# tables


def format_value(value) -> str:
    """Numbers to 4 significant digits, NaN as ``nan``, a list as its values
    joined by ``/``, everything else as ``str``."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):  # one value per seed
        return "/".join(format_value(v) for v in value)
    return str(value)


def csv_cell(value):
    """A CSV cell: a list (one value per seed, e.g. ``best_epochs``) as ``12/15/11``, else the value."""
    return "/".join(str(v) for v in value) if isinstance(value, (list, tuple)) else value


def table_columns(rows: list) -> list:
    """Every column that occurs in ``rows``, in order of first appearance."""
    columns = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    return columns


def csv_text(rows: list) -> str:
    """The rows as CSV (full precision)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=table_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def markdown_table(rows: list, columns: list | None = None) -> str:
    """A GitHub markdown table of ``rows`` (numbers to 4 significant digits)."""
    columns = columns or table_columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(format_value(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def distinct_values(rows: list, key: str) -> list:
    """The values column ``key`` takes, in order of first appearance."""
    seen = []
    for row in rows:
        if row[key] not in seen:
            seen.append(row[key])
    return seen
