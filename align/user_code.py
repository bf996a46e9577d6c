"""Code a user names in a config, `path/to/file.py:name` or `package.module:name` (reward
functions, environments): imported once, every failure an AlignInputError naming what to fix."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from align.errors import AlignInputError


def load_named(spec: str, what: str, kind: str = "function") -> Any:
    """The object `spec` names; `what` says where the config names it (for the messages)."""
    if ":" not in spec:
        raise AlignInputError(f"{what}: write 'path/to/file.py:{kind}_name' or 'package.module:{kind}_name'")
    where, name = spec.rsplit(":", 1)
    if where.endswith(".py") or "/" in where:
        path = Path(where).expanduser()
        if not path.is_file():
            raise AlignInputError(f"{what}: no file {path}; give 'path/to/file.py:{kind}_name'")
        module_name = f"align_user_code_{abs(hash(str(path.resolve())))}"
        module = sys.modules.get(module_name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[module_name] = module
            try:
                loader_spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[module_name]
                raise AlignInputError(f"{what}: importing {path} failed: {type(exc).__name__}: {exc}") from None
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise AlignInputError(f"{what}: cannot import module {where!r} ({exc})") from None
    found = getattr(module, name, None)
    if found is None:
        raise AlignInputError(f"{what}: {where} has no {kind} {name!r}")
    return found
