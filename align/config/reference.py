"""The config-key reference, generated from the pydantic field descriptions.

Each key is documented once, in `align/config/`; the docs site's stage pages render these rows
(docs/hooks/config_keys.py), so no description is ever copied by hand.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


@dataclass(frozen=True)
class KeyRow:
    key: str  # dotted path as written in YAML or on the command line
    type: str
    default: str
    description: str


def _sections(annotation) -> list[type[BaseModel]]:
    """The config sections a field's type holds (directly, optionally, or as list/dict values)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found = []
    for arg in typing.get_args(annotation):
        found += _sections(arg)
    return found


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) if isinstance(a, str) else str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default if field.default is not PydanticUndefined else field.default_factory()
    if isinstance(value, BaseModel):
        return "(see below)"  # its section's keys follow
    return "null" if value is None else repr(value) if isinstance(value, str) else str(value)


def _child_prefix(key: str, annotation) -> str:
    """How a nested key is written: `a.b` in a section, `a[].b` in each item of a list (set the
    whole list), `a.<name>.b` under each name of a mapping."""
    for candidate in (annotation, *typing.get_args(annotation)):
        origin = typing.get_origin(candidate)
        if origin is list:
            return f"{key}[]."
        if origin is dict:
            return f"{key}.<name>."
    return f"{key}."


def key_rows(config: type[BaseModel], prefix: str = "") -> list[KeyRow]:
    """Every key of `config`, depth first, with nested sections after the field that holds them."""
    rows = []
    for name, field in config.model_fields.items():
        key = f"{prefix}{name}"
        sections = _sections(field.annotation)
        section_doc = (sections[0].__doc__ or "").strip().split("\n")[0] if sections else ""
        doc = field.description or section_doc
        rows.append(KeyRow(key, _type_name(field.annotation), _default(field), doc.strip()))
        for section in sections:
            rows += key_rows(section, prefix=_child_prefix(key, field.annotation))
    return rows


def markdown_table(config: type[BaseModel]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| key | type | default | what it does |", "| --- | --- | --- | --- |"]
    for row in key_rows(config):
        lines.append(f"| `{row.key}` | {row.type} | `{cell(row.default)}` | {cell(row.description)} |")
    return "\n".join(lines) + "\n"
