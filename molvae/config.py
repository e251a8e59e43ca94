"""Typed stage configs: dataclasses with defaults, built from dicts/YAML with strict checking.

Every stage has one config dataclass. The CLI builds its flags from the dataclass fields
(see ``cli.py``) and pipelines build it from YAML, so both paths share one definition of
defaults, types and help text. An unknown key is an error that names the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the offending key."""


def option(default: Any = dataclasses.MISSING, help: str = "", positional: bool = False,
           aliases: tuple[str, ...] = (), **kwargs: Any) -> Any:
    """A dataclass field carrying CLI help text, short flags, and whether it is positional."""
    metadata = {"help": help, "positional": positional, "aliases": aliases}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata,
                                 **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a config dataclass (annotations are strings under __future__)."""
    return typing.get_type_hints(cls)


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """Return (inner type, is_optional) for ``X | None`` / ``Optional[X]``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the annotated type, or raise a ConfigError naming ``key``."""
    inner, optional = unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"'{key}' may not be empty")
    origin = typing.get_origin(inner)
    try:
        if origin is list:
            (item_type,) = typing.get_args(inner) or (str,)
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return [coerce(v, item_type, key) for v in value]
        if origin is dict or inner is dict:
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
        if inner is bool:
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
                return False
            if isinstance(value, bool):
                return value
            raise TypeError
        if inner is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if inner is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if inner is Path:
            return Path(value)
        if inner is str:
            if isinstance(value, (dict, list)):
                raise TypeError
            return str(value)
        return value
    except (TypeError, ValueError):
        name = getattr(inner, "__name__", str(inner))
        raise ConfigError(f"'{key}' must be {name}, got {value!r}") from None


def from_dict(cls: type[C], data: dict[str, Any] | None, where: str = "config") -> C:
    """Build config ``cls`` from a mapping; unknown keys and bad values raise ConfigError.

    Args:
        cls: a config dataclass.
        data: keys are field names (``-`` and ``_`` both accepted).
        where: a label for messages, e.g. the stage name in a pipeline file.
    """
    data = dict(data or {})
    hints = field_types(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        if key not in known:
            valid = ", ".join(sorted(known))
            raise ConfigError(f"{where}: unknown key '{raw_key}' (valid keys: {valid})")
        kwargs[key] = coerce(value, hints[key], f"{where}.{key}")
    missing = [n for n, f in known.items() if n not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required key(s): {', '.join(missing)}")
    config = cls(**kwargs)
    validate = getattr(config, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
    return config


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain YAML/JSON-friendly data (paths become strings)."""
    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or non-mapping content is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values")
    return data
