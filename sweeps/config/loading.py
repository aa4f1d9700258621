"""Reading a sweep YAML: ``yaml.safe_load``, then the schema, each problem one line that names
the file, the line and the field."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from sweeps.config.checks import ConfigError
from sweeps.config.sweep import SweepConfig


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep YAML; raise ConfigError with one line per problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f"{path}:{line + 1}" if line is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_errors(exc, path=path, text=text)) from None


def config_from_dict(raw: Mapping[str, object], *, source: str = "<config>") -> SweepConfig:
    """Validate an in-memory config (the Python API's entry)."""
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_errors(exc, path=Path(source))) from None


def format_validation_errors(exc: ValidationError, *, path: Path, text: str | None = None) -> str:
    """One line per problem: ``<file>[:<line>]: <field>: <message>`` (the line when ``text``, the
    YAML source, is given)."""
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"] if not _is_union_tag(part)]
        field = ".".join(loc) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
        elif error["type"] == "missing":
            message = "required field is missing"
        line = _yaml_line(text, error["loc"]) if text else None
        where = f"{path}:{line}" if line else str(path)
        lines.append(f"{where}: {field}: {message}" if loc else f"{where}: {message}")
    return "\n".join(dict.fromkeys(lines))


def _is_union_tag(part: object) -> bool:
    tags = ("LogUniform", "Uniform", "IntRange", "Choice", "RatioOfR", "float", "int")
    return isinstance(part, str) and (
        part in tags or part.startswith(("function-", "asha", "none"))
    )


def _yaml_line(text: str, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line in the YAML source of the deepest mapping key on ``loc``."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def resolve_path(value: str, *, config_dir: Path) -> Path:
    """Relative paths in a config are relative to the config file's directory."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (config_dir / path).resolve()
