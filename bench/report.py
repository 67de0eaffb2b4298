"""What a resumable bench driver writes after every measurement: results.json, results.md and a figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save_report(out: Path, results: dict[str, Any], table: str, figure: Any, figure_name: str) -> None:
    """results.json (`results`), results.md (`table`) and `figure` (a matplotlib Figure) as `figure_name`, each
    written atomically: a driver stopped at any moment leaves its last complete report."""
    from srvp.common.files import atomic_write

    atomic_write(out / "results.json", lambda file: file.write(json.dumps(results, indent=1).encode()))
    atomic_write(out / "results.md", lambda file: file.write(table.encode()))
    atomic_write(out / figure_name, lambda file: figure.savefig(file, format="png", dpi=120))
