"""Typed configs: strict keys, coercion with errors that name the key, YAML reading."""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from molvae.config import ConfigError, Renamed, flat_fields, from_dict, load_yaml, option, to_dict


@dataclass
class Example:
    name: str = option(help="required", positional=True)
    count: int = option(3)
    ratio: float = option(0.5)
    flag: bool = option(False)
    tags: list[str] = option(["a"])
    folder: Path | None = option(None)

    def validate(self) -> None:
        if self.count < 0:
            raise ConfigError(f"count must be >= 0, got {self.count}")


def test_values_are_coerced_to_the_annotated_types() -> None:
    config = from_dict(Example, {"name": "x", "count": "4", "ratio": 1, "flag": "yes",
                                 "tags": "b, c", "folder": "out"})
    assert (config.count, config.ratio, config.flag, config.tags, config.folder) == \
        (4, 1.0, True, ["b", "c"], Path("out"))
    assert to_dict(config)["folder"] == "out"


def test_defaults_are_not_shared_between_instances() -> None:
    first, second = from_dict(Example, {"name": "x"}), from_dict(Example, {"name": "y"})
    first.tags.append("z")
    assert second.tags == ["a"]


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "x", "colour": 1}, "unknown key 'colour'"),
    ({}, "missing required key"),
    ({"name": "x", "count": 1.5}, "'stage.count' must be int"),
    ({"name": "x", "flag": "maybe"}, "'stage.flag' must be bool"),
    ({"name": "x", "count": -1}, "stage: count must be >= 0"),
    ({"name": None}, "'stage.name' may not be empty"),
])
def test_bad_configs_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(Example, data, where="stage")


def test_dashes_and_underscores_are_the_same_key() -> None:
    @dataclass
    class Dashed:
        max_steps: int = option(1)

    assert from_dict(Dashed, {"max-steps": 7}).max_steps == 7


def test_renamed_keys_are_read_as_the_new_key_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    """A plain rename keeps the value and its old flag is an alias; a :class:`Renamed` converts
    the value (its errors name the old key) and its old flag is not an alias of the new one."""
    def percent(value: object) -> float:
        if not isinstance(value, int):
            raise ConfigError(f"percent must be a whole number, got {value!r}")
        return value / 100

    @dataclass
    class Moved:
        RENAMED: ClassVar[dict[str, str | Renamed]] = {"n": "count",
                                                       "percent": Renamed("ratio", percent)}
        count: int = option(1)
        ratio: float = option(0.5)

    with caplog.at_level(logging.WARNING, "molvae.config"):
        config = from_dict(Moved, {"n": "4", "percent": 25}, where="stage")
    assert (config.count, config.ratio) == (4, 0.25)
    assert "stage: 'n' is now called 'count'" in caplog.text
    assert "stage: 'percent' is now called 'ratio': 'percent: 25' reads as 'ratio: 0.25'" \
        in caplog.text
    with pytest.raises(ConfigError, match="stage: percent must be a whole number"):
        from_dict(Moved, {"percent": "x"}, where="stage")
    aliases = {field.name: field.aliases for field in flat_fields(Moved)}
    assert aliases == {"count": ("--n",), "ratio": ()}


def test_load_yaml_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "none.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_yaml(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml(tmp_path / "empty.yaml") == {}
