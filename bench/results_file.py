"""Where every benchmark writes its JSON: bench/results/<name>.json."""

import json
import os
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
OPENMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def openmp_policy() -> dict[str, str | None]:
    """The OpenMP idle policy a benchmark ran with (see r2s_model/__init__.py)."""
    return {name: os.environ.get(name) for name in OPENMP_VARIABLES}


def write_result(name: str, report: dict[str, Any]) -> Path:
    """Writes `report` as bench/results/<name>.json and returns the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
