"""Turn YAML into frozen dataclasses, checked once, with errors that name the key.

Every section is a frozen dataclass whose fields carry their own documentation in
``field(metadata={"doc": ...})``. The loader walks the dataclass tree, so adding a
field to a section is all it takes to make it loadable, overridable with
``--set a.b=value`` and documented by ``toad config-reference``.

A section may define ``validate(self, path)`` for checks that involve more than
one field's type; it raises :class:`ConfigError` naming the key and the fix.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml


from toad.errors import ToadError


class ConfigError(ToadError, ValueError):
    """A configuration value is wrong; the message names the key and the fix."""


def doc(text: str, **kwargs: Any) -> Any:
    """A dataclass field with a documentation string (shown in the config reference)."""
    return dataclasses.field(metadata={"doc": text}, **kwargs)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " / ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it converted."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping of keys, got {value!r}")
        return build(tp, value, path)
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool):
            value = yaml_word(value, choices, path)
        if value not in choices:
            raise ConfigError(
                f"{path}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _convert(arg, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{path}: {value!r} is not a {_type_name(tp)}")
    if origin in (list, tuple):
        (item_tp, *_rest) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            value = [value]  # a scalar where a list is expected means a list of one
        items = [_convert(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: {value!r} is not true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: {value!r} is not a whole number")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: {value!r} is not a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {value!r} is not a string")
        return value
    raise ConfigError(f"{path}: unsupported type {tp!r} in the schema")


# YAML 1.1 (PyYAML) reads these words as booleans
YAML_WORDS = {False: ("off", "no", "false", "n"), True: ("on", "yes", "true", "y")}


def yaml_word(value: bool, choices: tuple, path: str) -> Any:
    """The choice a YAML boolean stood for (``checksum: off`` reads as false): the one
    choice among the words YAML reads as that boolean, else a ConfigError saying how
    to write the value."""
    words = [c for c in choices if isinstance(c, str) and c.lower() in YAML_WORDS[value]]
    if len(words) == 1:
        return words[0]
    word = YAML_WORDS[value][0]
    raise ConfigError(f"{path}: {value!r} is not one of {', '.join(map(str, choices))} "
                      f"(YAML reads off/on/yes/no as false/true: quote a word, e.g. "
                      f"--set '{path}=\"{word}\"')")


def build(cls: type, data: dict, path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            where = f"{path}.{key}" if path else str(key)
            moved_key(getattr(cls, "MOVED", {}), key, data[key], where)
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where}: unknown key (known keys here: {known})")
    kwargs = {}
    for name in fields:
        if name in data:
            sub = f"{path}.{name}" if path else name
            kwargs[name] = _convert(hints[name], data[name], sub)
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(path)
    return obj


def moved_key(moved: dict, key: str, value: Any, where: str) -> None:
    """Raise the error naming the successor of a key an earlier version had (a class's
    ``MOVED``: {key: successor} or, for a section, {section: {key: successor}})."""
    if key not in moved:
        return
    successor = moved[key]
    if isinstance(successor, dict):
        for sub in (value if isinstance(value, dict) else {}):
            if sub in successor:
                raise ConfigError(f"{where}.{sub}: moved to {successor[sub]}")
        raise ConfigError(f"{where}: this section is gone; its keys moved: "
                          + "; ".join(f"{where}.{k} to {v}" for k, v in successor.items()))
    raise ConfigError(f"{where}: moved to {successor}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` (value in YAML syntax) from ``--set``."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {exc}") from None
    return key.split("."), value


def apply_override(data: dict, keys: list[str], value: Any) -> None:
    """Set ``data[k0][k1]...`` = value, creating intermediate mappings."""
    node = data
    for i, k in enumerate(keys[:-1]):
        nxt = node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {'.'.join(keys)}: {'.'.join(keys[:i + 1])} is not a mapping")
        node = nxt
    node[keys[-1]] = value


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping from ``path`` with errors that name the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys")
    return data


def reference(cls: type, path: str = "") -> list[tuple[str, str, Any, str]]:
    """(key, type, default, doc) for every leaf of the schema, for the README."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{path}.{f.name}" if path else f.name
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(reference(tp, key))
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        rows.append((key, _type_name(tp), default, f.metadata.get("doc", "")))
    return rows
