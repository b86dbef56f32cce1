"""Dataclasses from YAML, checked: the machinery under :mod:`meal_lite.config.schema`.

A configuration is a tree of dataclasses. :func:`build` makes one from plain mappings (read from YAML)
and checks every key and type against the annotations, so a typo or a wrong type stops a run at once
with one sentence that names the key, what it expects and the valid keys nearby. Two kinds of nested
dataclasses: *sections* (a mapping of keys) and *entries* (items of a list that may also be written as a
bare string: a class attribute ``SHORTHAND`` names the field a string fills, e.g. ``teachers: [resnet50]``).
:func:`apply_override` does the same for ``section.key=value`` overrides from the command line.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Sequence

import yaml

from meal_lite.errors import ConfigError

__all__ = ["build", "read_yaml", "parse_override", "apply_override", "dump_yaml"]


def _is_entry(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp) and hasattr(tp, "SHORTHAND")


def _is_section(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp) and not hasattr(tp, "SHORTHAND")


def _field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's fields (class variables such as ``SHORTHAND`` left out)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(tp: Any) -> str:
    """Human-readable name of an annotation, e.g. ``int or null``, ``list of int``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [_type_name(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(parts) + " or null"
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"list of {_type_name(item)}"
    if _is_entry(tp):
        return f"{tp.__name__} (a {tp.SHORTHAND} or a mapping)"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


class _TypeMismatch(Exception):
    """Internal: a value does not fit an annotation (turned into a ConfigError with the key)."""


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Return ``value`` checked (and minimally converted) against annotation ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        for arg in args:
            try:
                return _coerce(value, arg, key, where)
            except _TypeMismatch:
                continue
        raise _TypeMismatch
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _TypeMismatch
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, key, where) for v in value]
    if _is_entry(tp):
        if isinstance(value, str):  # shorthand: a bare string fills the entry's SHORTHAND field
            return tp(**{tp.SHORTHAND: value})
        if isinstance(value, dict):
            return build(tp, value, f"{key}[]", where)
        raise _TypeMismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _TypeMismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _TypeMismatch
    if tp is float:  # finite numbers only
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            # YAML 1.1 reads "1e-4" (no dot) as a string; accept what Python reads as a number.
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None or not math.isfinite(number):
            raise _TypeMismatch
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise _TypeMismatch
    raise _TypeMismatch


def _check_value(value: Any, tp: Any, key: str, where: str) -> Any:
    """Coerce one value or raise a one-sentence ConfigError naming key, expected type and value."""
    try:
        return _coerce(value, tp, key, where)
    except _TypeMismatch:
        raise ConfigError(
            f"Config key '{key}' {where} expects {_type_name(tp)}, but was given {value!r} "
            f"({type(value).__name__})."
        ) from None


def _unknown_key_error(key: str, section: str, valid: Sequence[str], where: str) -> ConfigError:
    """One sentence: the unknown key, a close match if any, and every valid key of the section."""
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, valid, n=1)
    full = f"{section}.{close[0]}" if close and section else (close[0] if close else "")
    hint = f" (did you mean '{full}'?)" if close else ""
    scope = f"section '{section}'" if section else "the top level"
    return ConfigError(
        f"Unknown config key '{key}' {where}{hint}; valid keys of {scope} are: {', '.join(valid)}."
    )


def build(cls: type, mapping: Any, prefix: str, where: str) -> Any:
    """Build dataclass ``cls`` from a (possibly partial) mapping, checking keys and types."""
    if not isinstance(mapping, dict):
        raise ConfigError(
            f"Config section '{prefix or 'top level'}' {where} must be a mapping of keys to values, "
            f"but was given {mapping!r}."
        )
    hints = _field_types(cls)
    kwargs = {}
    for key, value in mapping.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            raise _unknown_key_error(full, prefix, list(hints), where)
        tp = hints[key]
        if _is_section(tp):
            kwargs[key] = build(tp, value if value is not None else {}, full, where)
        else:
            kwargs[key] = _check_value(value, tp, full, where)
    try:
        return cls(**kwargs)
    except TypeError:  # a required field (an entry's SHORTHAND field) is missing
        raise ConfigError(f"Config entry '{prefix}' {where} needs a '{getattr(cls, 'SHORTHAND', 'name')}' key.") from None


# --------------------------------------------------------------------------------------------------
# Files and overrides


def read_yaml(path: Path) -> dict:
    """Read a YAML mapping or raise a one-sentence ConfigError."""
    if not path.is_file():
        raise ConfigError(
            f"Config file '{path}' does not exist; pass the path of a YAML file (examples are in "
            f"configs/), the name of a packaged one (imagenet/resnet50-224), or nothing for the profile's default."
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" near line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"Config file '{path}' is not valid YAML{line}; fix its syntax.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file '{path}' must hold a mapping of sections, not {type(data).__name__}.")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into (["a", "b"], parsed value); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"Override '{text}' is not of the form section.key=value (e.g. train.epochs=3).")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"Override '{text}' has an empty key; write it as section.key=value.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: keep the raw text, the type check decides
    return key.split("."), value


def apply_override(root: type, data: dict, parts: list[str], value: Any, text: str) -> None:
    """Set ``data[parts[0]][parts[1]]... = value``, checking the path against the dataclasses."""
    cls: Any = root
    node = data
    for depth, part in enumerate(parts):
        hints = _field_types(cls)
        prefix = ".".join(parts[:depth])
        if part not in hints:
            raise _unknown_key_error(".".join(parts[: depth + 1]), prefix, list(hints), "from the command line")
        tp = hints[part]
        last = depth == len(parts) - 1
        if last:
            if not _is_section(tp):
                _check_value(value, tp, ".".join(parts), "from the command line")
            node[part] = value
            return
        if not _is_section(tp):
            raise ConfigError(
                f"Override '{text}' goes below '{'.'.join(parts[:depth + 1])}', which is a single value; "
                f"write {'.'.join(parts[:depth + 1])}=VALUE."
            )
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node, cls = child, tp


class _Dumper(yaml.SafeDumper):
    """YAML dumper writing sections as blocks and lists of scalars inline (``milestones: [100]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    inline = all(not isinstance(item, (dict, list)) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=inline)


_Dumper.add_representer(list, _represent_list)




def dump_yaml(data: Any) -> str:
    """``data`` as block YAML, keys in their order, lists of scalars inline."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
