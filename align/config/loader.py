"""YAML + dotted overrides -> a validated stage config, or one clear `AlignInputError`.

Errors name the file, the dotted key, what is wrong and, for an unknown key, the closest
valid one, so a typo costs seconds instead of a failed run.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from align.config.common import Section
from align.errors import AlignInputError

DEMO_PREFIX = "demo:"
NAMED_PREFIXES = (DEMO_PREFIX, "models:", "data:")
"""References resolved by resolve_demo_refs (a demo world's file, a catalog model, a public data set), not paths to check."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a syntax error names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise AlignInputError(f"config file not found: {path} (the configs/ folder of the repository has examples)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise AlignInputError(f"{where}: invalid YAML: {exc.problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AlignInputError(f"{path}: the top level must be a mapping of keys, not {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` strings (values parsed as YAML) to a nested dict; returns a new dict."""
    result = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise AlignInputError(f"override '{item}' must look like key.sub=value (e.g. training.learning_rate=1e-4)")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = result
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise AlignInputError(f"override '{item}': '{prefix}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return result


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def _section_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The config class that owns the key at `loc` (for suggesting the closest valid key)."""
    cls: Any = root
    for part in loc:
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return None
        field = cls.model_fields.get(part)
        if field is None:
            return None
        cls = _model_in(field.annotation)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _describe(error: dict, root: type[BaseModel], source: str) -> str:
    loc = tuple(str(p) for p in error["loc"] if not str(p).startswith("function-"))
    dotted = ".".join(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        owner = _section_at(root, loc[:-1])
        valid = sorted(owner.model_fields) if owner else []
        close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
        prefix = ".".join(loc[:-1])
        hint = (
            f"did you mean '{prefix + '.' if prefix else ''}{close[0]}'?"
            if close
            else f"valid keys here: {', '.join(valid)}"
        )
        return f"{source}: unknown key '{dotted}': {hint}"
    if error["type"] == "missing":
        return f"{source}: missing required key '{dotted}'"
    value = error.get("input")
    shown = f" = {value!r}" if not isinstance(value, (dict, list)) else ""
    message = error["msg"].removeprefix("Value error, ")
    return f"{source}: {dotted}{shown}: {message}"


def validate(cls: type[Section], data: dict[str, Any], source: str = "config") -> Section:
    """Build `cls` from plain data; every problem is reported in one AlignInputError."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(err, cls, source) for err in exc.errors()]
        raise AlignInputError("\n".join(dict.fromkeys(lines))) from None


def load_config(cls: type[Section], path: str | Path | None, overrides: list[str] | None = None) -> Section:
    """YAML file (optional) + dotted overrides -> validated config of class `cls`."""
    data = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "command line"
    if overrides:
        source += " (with overrides " + " ".join(overrides) + ")"
    return validate(cls, apply_overrides(data, overrides or []), source)


def resolve_demo_refs(config: Section) -> Section:
    """Replace every 'demo:<size>/<path>' string by the real path, building the demo world if needed,
    every 'models:<name>' by the cached model file, pulling it if needed (align.catalog), and every
    'data:<name>' by the cached rows of a public data set (align.data.catalog).

    Done after validation (not inside it) so that loading a config stays free of side effects.
    """
    from align import catalog
    from align.data import catalog as data_catalog
    from align.demo import resolve_demo_ref

    def walk(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(DEMO_PREFIX):
            return str(resolve_demo_ref(value))
        if isinstance(value, str) and value.startswith(catalog.PREFIX):
            return catalog.resolve_ref(value)
        if isinstance(value, str) and value.startswith(data_catalog.PREFIX):
            return data_catalog.resolve_ref(value)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return type(config).model_validate(walk(config.model_dump()))


def to_yaml(config: Section) -> str:
    """The resolved config as YAML, the form saved in the run dir and printed at start."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


_FILE_SUFFIXES = {".jsonl", ".json", ".csv", ".parquet", ".txt", ".md", ".yaml", ".yml", ".db"}


def _looks_local(value: str) -> bool:
    """Hub ids are `name` or `org/name`; a URL (sqlite:///..., postgresql://...) is its reader's to check;
    anything else that does not exist is a missing local path."""
    if "://" in value:
        return False
    return (
        value.startswith(("/", "./", "../", "~"))
        or value.count("/") > 1
        or Path(value).suffix.lower() in _FILE_SUFFIXES
    )


def check_input_paths(config: Section, source: str = "config", run_dirs: bool = False) -> None:
    """Fail before any work if a field marked INPUT_PATH names a local path that does not exist.

    Separate from validation because configs may name outputs of earlier stages that are
    only produced later in a pipeline. `run_dirs`: also a missing run dir that a config here
    writes (`runs/sft-tiny`), named with that config; off inside a pipeline, which rewires them.
    """
    from align.hints import how_to_make

    missing: list[str] = []

    def walk(section: BaseModel, prefix: str) -> None:
        for name, field in type(section).model_fields.items():
            value = getattr(section, name)
            dotted = f"{prefix}{name}"
            if isinstance(value, BaseModel):
                walk(value, dotted + ".")
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if extra.get("input_path") and isinstance(value, str) and not value.startswith(NAMED_PREFIXES):
                if Path(value).expanduser().exists():
                    continue
                hint = how_to_make(value) if run_dirs or _looks_local(value) else None
                if _looks_local(value) or hint:
                    missing.append(
                        f"{source}: {dotted} = {value!r}: no such file or directory" + (f"; {hint}" if hint else "")
                    )

    walk(config, "")
    if missing:
        raise AlignInputError("\n".join(missing))
