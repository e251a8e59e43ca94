"""Typed stage configs: dataclasses with defaults, built from dicts/YAML with strict checking.

Every stage has one config dataclass. The CLI builds its flags from the dataclass fields
(see ``cli.py``) and pipelines build it from YAML, so both paths share one definition of
defaults, types and help text. An unknown key is an error that names the key.

A field may also hold *option blocks* (:func:`blocks`): one options dataclass per key, e.g. one
per optimizer, declared next to the code it configures. The blocks are seen flat: the field
``sigma`` of block ``cmaes`` is the key ``cmaes_sigma`` and the flag ``--cmaes-sigma``, so two
blocks may use the same field name without the flags colliding. A config class may list keys it
has renamed (``RENAMED``, old -> new), which are still accepted, with a warning; a new key given
as a :class:`Renamed` also converts the old key's value to the new key's meaning.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

C = TypeVar("C", bound="DataclassInstance")
log = logging.getLogger(__name__)

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
"""A ``package.module:function`` value: an objective (or other code) named by import path."""

_BOUNDS = re.compile(r"^([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])$")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the offending key."""


def is_import_path(text: str) -> bool:
    """Whether ``text`` names code by import path (``package.module:function``)."""
    return bool(IMPORT_PATH.match(text))


def option(default: Any = dataclasses.MISSING, help: str = "", positional: bool = False,
           aliases: tuple[str, ...] = (), bounds: str | None = None,
           choices: tuple[str, ...] | None = None, **kwargs: Any) -> Any:
    """A dataclass field carrying CLI help text, short flags, and whether it is positional.

    Args:
        bounds: the interval a number must lie in, e.g. ``"(0, inf)"`` or ``"[0, 1)"``;
            checked by :func:`from_dict`, whose error names the key.
        choices: the values a string may take, checked the same way.
    """
    if bounds is not None and not _BOUNDS.match(bounds):
        raise ValueError(f"bounds must read like '(0, inf)' or '[0, 1)', got {bounds!r}")
    metadata = {"help": help, "positional": positional, "aliases": aliases, "bounds": bounds,
                "choices": choices}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata,
                                 **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def model_option() -> Any:
    """The ``model`` of every stage that reads a trained model. Declared once (a field per
    config, hence a function) because nine configs each wrote its help, and the copies drifted
    apart: some named the shipped model, some MLflow's ``runs:/`` URIs, none both."""
    return option(help="trained model: a folder (the --out of `molvae train`), a shipped model "
                  "(moses) or an MLflow URI (models:/NAME/VERSION, runs:/RUN_ID/model)")


def device_option() -> Any:
    """The torch ``device`` of every stage that runs a network, declared once for the reason
    :func:`model_option` gives."""
    return option("auto", help="torch device: auto (cuda, else mps, else cpu), cpu, cuda, "
                  "cuda:N or mps")


def batch_size_option(default: int) -> Any:
    """The ``batch_size`` of the stages that run the model over many molecules, declared once
    for the reason :func:`model_option` gives; the default is the stage's own, as the memory a
    molecule takes differs between encoding and decoding."""
    return option(default, help="molecules the model encodes or decodes at once (more is "
                  "faster, up to the memory it takes)", bounds="[1, inf)")


def blocks(kinds: Callable[[], Mapping[str, type]], help: str = "") -> Any:
    """A field holding one options dataclass per key: ``{key: kinds()[key]()}`` by default.

    ``kinds`` is called when the blocks are needed (not at import), so a registry can supply
    them. Each block's fields are seen flat as ``KEY_FIELD`` (see the module docstring).
    """
    return dataclasses.field(
        default_factory=lambda: {key: kind() for key, kind in kinds().items()},
        metadata={"help": help, "blocks": kinds})


@dataclasses.dataclass(frozen=True)
class FlatField:
    """One key of a config as the CLI and YAML see it: a field, or a field of a block."""

    name: str
    type: Any
    default: Any
    help: str
    positional: bool = False
    aliases: tuple[str, ...] = ()


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


@dataclasses.dataclass(frozen=True)
class Renamed:
    """A renamed key whose value means something else now: ``convert`` turns an old value into
    the new key's (a ConfigError naming the old key if it cannot). In ``RENAMED`` (old -> new)
    in place of the new key's name; the old key's flag is then a flag of its own, not an alias
    of the new one's, so that its value is converted too."""

    key: str
    convert: Callable[[Any], Any]


def _renamed(cls: type) -> dict[str, str | Renamed]:
    """Old key -> new key (or :class:`Renamed`), for keys the config class has renamed."""
    return dict(getattr(cls, "RENAMED", {}))


def converted_keys(cls: type) -> list[str]:
    """The renamed keys of config ``cls`` whose values are converted (see :class:`Renamed`):
    the CLI gives each a hidden flag of its own."""
    return [old for old, new in _renamed(cls).items() if isinstance(new, Renamed)]


def _block_fields(field: dataclasses.Field) -> Iterator[tuple[str, str, type, dataclasses.Field]]:
    """(flat key, block key, block class, field) of every field of every block of ``field``."""
    for key, kind in field.metadata["blocks"]().items():
        for inner in dataclasses.fields(kind):
            yield f"{key}_{inner.name}", key, kind, inner


def flat_fields(cls: type) -> list[FlatField]:
    """Every key of config ``cls`` in order, block fields flattened (see :func:`blocks`); a
    renamed key's old spelling is an alias of its flag."""
    hints = field_types(cls)
    old_names: dict[str, list[str]] = {}
    for old, new in _renamed(cls).items():
        if isinstance(new, str):  # a converted key is not an alias: see converted_keys
            old_names.setdefault(new, []).append(f"--{old.replace('_', '-')}")
    flat: list[FlatField] = []
    for field in dataclasses.fields(cls):
        if "blocks" not in field.metadata:
            flat.append(FlatField(field.name, hints[field.name], _default(field),
                                  field.metadata.get("help", ""),
                                  field.metadata.get("positional", False),
                                  (*field.metadata.get("aliases", ()),
                                   *old_names.get(field.name, ()))))
            continue
        for name, key, kind, inner in _block_fields(field):
            flat.append(FlatField(name, field_types(kind)[inner.name], _default(inner),
                                  f"{key}: {inner.metadata.get('help', '')}",
                                  aliases=tuple(old_names.get(name, ()))))
    return flat


def check_value(value: Any, field: dataclasses.Field, key: str) -> None:
    """The ``bounds`` and ``choices`` of an :func:`option`; a ConfigError names ``key``."""
    choices, bounds = field.metadata.get("choices"), field.metadata.get("bounds")
    if value is None:
        return
    if choices is not None and value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got '{value}'")
    if bounds is None:
        return
    left, low, high, right = _BOUNDS.match(bounds).groups()  # type: ignore[union-attr]
    above = value >= float(low) if left == "[" else value > float(low)
    below = value <= float(high) if right == "]" else value < float(high)
    if not (above and below):
        rule = (f"{'>=' if left == '[' else '>'} {low}" if math.isinf(float(high))
                else f"in {bounds}")
        raise ConfigError(f"{key} must be {rule}, got {value}")


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


def from_dict(cls: type[C], data: Mapping[str, Any] | None, where: str = "config") -> C:
    """Build config ``cls`` from a mapping; unknown keys and bad values raise ConfigError.

    Args:
        cls: a config dataclass.
        data: keys are field names (``-`` and ``_`` both accepted); a field of a block is
            ``KEY_FIELD``, or ``FIELD`` inside a mapping under ``KEY`` (see :func:`blocks`).
        where: a label for messages, e.g. the stage name in a pipeline file.
    """
    renamed = _renamed(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    grouped: dict[str, dict[str, dict[str, Any]]] = {
        name: {key: {} for key in f.metadata["blocks"]()}
        for name, f in fields.items() if "blocks" in f.metadata}
    in_block = {flat: (name, key, inner.name) for name in grouped
                for flat, key, _, inner in _block_fields(fields[name])}
    nested = {key: name for name, keys in grouped.items() for key in keys}
    values: dict[str, Any] = {}
    for raw_key, value in (data or {}).items():
        key = str(raw_key).replace("-", "_")
        if key in renamed:
            key, value = _rename(renamed[key], raw_key, value, where)
        if key in in_block:
            name, block, inner = in_block[key]
            grouped[name][block][inner] = value
        elif key in nested and isinstance(value, Mapping):
            for inner, item in value.items():
                flat = f"{key}_{str(inner).replace('-', '_')}"
                if flat not in in_block:
                    raise ConfigError(f"{where}: unknown key '{inner}' under '{key}' (valid: "
                                      f"{', '.join(k for k in in_block if k.startswith(key))})")
                grouped[nested[key]][key][in_block[flat][2]] = item
        elif key in fields and key not in grouped:
            values[key] = value
        else:
            valid = ", ".join(sorted(f.name for f in flat_fields(cls)))
            raise ConfigError(f"{where}: unknown key '{raw_key}' (valid keys: {valid})")
    kwargs = _build(cls, values, where)
    for name, block_values in grouped.items():
        kinds = fields[name].metadata["blocks"]()
        kwargs[name] = {key: kinds[key](**_build(kinds[key], block_values[key], where, key))
                        for key in kinds}
    config = cls(**kwargs)
    validate = getattr(config, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
    return config


def _rename(new: str | Renamed, old: Any, value: Any, where: str) -> tuple[str, Any]:
    """The new key of renamed key ``old`` and its value, with a warning naming both."""
    if isinstance(new, str):
        log.warning("%s: '%s' is now called '%s'", where, old, new)
        return new, value
    try:
        converted = new.convert(value)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    log.warning("%s: '%s' is now called '%s': '%s: %s' reads as '%s: %s'", where, old, new.key,
                old, value, new.key, converted)
    return new.key, converted


def _build(cls: type, values: dict[str, Any], where: str, block: str = "") -> dict[str, Any]:
    """The keyword arguments of ``cls`` from plain values: coerced, checked, none missing.
    Keys in messages are the flat keys (``block_field`` for a field of a block)."""
    hints = field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in values.items():
        key = f"{block}_{name}" if block else name
        kwargs[name] = coerce(value, hints[name], f"{where}.{key}")
        try:
            check_value(kwargs[name], fields[name], key)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
    missing = [n for n, f in fields.items() if n not in kwargs and "blocks" not in f.metadata
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required key(s): {', '.join(missing)}")
    return kwargs


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain YAML/JSON-friendly data (paths become strings, blocks flat keys), the
    keys :func:`from_dict` reads back."""
    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    flat: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if "blocks" not in field.metadata:
            flat[field.name] = plain(value)
            continue
        for key, block in value.items():  # the flat keys of from_dict: KEY_FIELD
            flat.update({f"{key}_{name}": plain(item)
                         for name, item in to_dict(block).items()})
    return flat


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
