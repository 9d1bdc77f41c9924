"""Where Sharpen keeps what it writes: one data folder, chosen once."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """SHARPEN_DATA if set, else the repository's data/ folder (model caches, training runs, the database)."""
    return Path(os.environ.get("SHARPEN_DATA") or REPO / "data")
