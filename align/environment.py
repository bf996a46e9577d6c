"""`align env`: what a bug report needs to know about this machine, gathered in one place.

Like `trl env` and `accelerate env`: versions, the torch build and its devices, DeepSpeed's
accelerator and pre-built ops, the cache and its size, and whether an annotation database answers.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from align.cache import cache_dir
from align.rundir import TRACKED_PACKAGES, package_versions

# what every run's env.json records, and what a bug report about serving, GGUF, retrieval or a GPU needs
PACKAGES = (
    *TRACKED_PACKAGES,
    "sqlalchemy",
    "psycopg",
    "gguf",
    "sentence-transformers",
    "bm25s",
    "bitsandbytes",
    "flash-attn",
)


def torch_report() -> dict[str, str]:
    import torch

    report = {
        "build": f"{torch.__version__} (CUDA {torch.version.cuda})"
        if torch.version.cuda
        else f"{torch.__version__} (CPU)",
        "CPU threads": str(torch.get_num_threads()),
        "CUDA available": str(torch.cuda.is_available()),
    }
    from align.device import NATIVE_BF16_FLAGS, cpu_capabilities, cpu_name

    flags = [flag for flag in NATIVE_BF16_FLAGS if cpu_capabilities().get(flag) is True]
    report["CPU"] = cpu_name()
    report["CPU native bf16"] = ", ".join(flags) if flags else "none (precision auto = fp32 on this CPU)"
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        report["GPUs"] = ", ".join(names)
        report["bf16 on GPU"] = str(torch.cuda.is_bf16_supported())
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        report["MPS"] = "available"
    return report


def deepspeed_report() -> dict[str, str]:
    try:
        from deepspeed.git_version_info import installed_ops
    except Exception as exc:  # deepspeed missing or broken: say so, the report is still useful
        return {"deepspeed": f"cannot be imported ({type(exc).__name__}: {exc})"}
    built = sorted(name for name, ok in installed_ops.items() if ok)
    return {
        "accelerator": os.environ.get("DS_ACCELERATOR", "auto (cpu when no GPU)"),
        "pre-built ops": ", ".join(built) if built else "none (ops compile on first use)",
    }


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def cache_report() -> dict[str, str]:
    root = cache_dir()
    if not root.is_dir():
        return {"cache": f"{root} (empty: nothing built or pulled yet)"}
    parts = {child.name: folder_size(child) for child in sorted(root.iterdir()) if child.is_dir()}
    detail = ", ".join(f"{name} {size / 2**20:.0f} MiB" for name, size in parts.items())
    return {"cache": f"{root} ({sum(parts.values()) / 2**20:.0f} MiB: {detail or 'empty'})"}


def database_report(db: str) -> dict[str, str]:
    """Whether the annotation database answers; the password is never printed."""
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.engine import make_url

    from annotation_ui.store import normalise_url, sqlite_path

    url = normalise_url(db)
    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    if (path := sqlite_path(url)) is not None and not path.is_file():
        return {"annotation database": f"{shown}: no such file (created by `align annotate import` or `generate`)"}
    try:
        timeout = {"connect_timeout": 5} if parsed.get_backend_name() == "postgresql" else {}
        engine = create_engine(url, connect_args=timeout)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            tables = inspect(connection).get_table_names()
        engine.dispose()
    except Exception as exc:  # report what the driver says, one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"annotation database": f"{shown}: NOT reachable ({reason})"}
    state = "annotation tables present" if "items" in tables else "no annotation tables yet"
    return {"annotation database": f"{shown}: reachable, {state}"}


def environment_report(db: str | None = None) -> dict[str, dict[str, str]]:
    report = {
        "system": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "CPU cores": str(os.cpu_count()),
            "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "unset"),
        },
        "packages": {name: version or "not installed" for name, version in package_versions(PACKAGES).items()},
        "torch": torch_report(),
        "deepspeed": deepspeed_report(),
        "cache": cache_report(),
    }
    if db:
        report["annotation"] = database_report(db)
    return report


def as_text(report: dict[str, dict[str, str]]) -> str:
    """Plain `- key: value` lines, to paste into a bug report as they are."""
    lines = []
    for section, values in report.items():
        lines.append(f"{section}:")
        lines += [f"- {key}: {value}" for key, value in values.items()]
    return "\n".join(lines)
