"""Where align keeps what it builds or fetches once (demo worlds, pulled models, converted GGUF
files): $ALIGN_CACHE, default ~/.cache/align."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    return Path(os.environ.get("ALIGN_CACHE", "~/.cache/align")).expanduser().joinpath(*parts)
