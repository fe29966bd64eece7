"""Where every benchmark writes its JSON: bench/results/<name>.json."""

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def write_result(name: str, report: dict[str, Any]) -> Path:
    """Writes `report` as bench/results/<name>.json and returns the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
