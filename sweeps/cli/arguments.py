"""The command line's arguments, generated from a verb's options model
(``sweeps/cli/options.py``): :func:`add_model_arguments` turns the model's fields into argparse
arguments, and :func:`options_from_namespace` the parsed arguments back into the model.

A field is a flag named after it (``state_dir`` -> ``--state-dir``) unless its
``json_schema_extra`` says otherwise: ``positional`` (an argument, a sequence taking any number),
``flag`` (another name: ``--json``), ``metavar``, ``negative_flag`` (a second flag that turns a
bool off: ``--keep-flagged``). By type: bool -> ``--x/--no-x``; Literal -> choices; a tuple flag
-> comma-separated; a dict flag -> text its model parses; int, float, str, Path -> that type.
A field without a default is required.

This module imports no torch, ray or mlflow: ``sweep --help`` builds every verb's flags.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable, Sequence
from typing import Literal, TypedDict, TypeVar, Union, cast, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo

from sweeps.config import ConfigError

Options = TypeVar("Options", bound=BaseModel)


class Switch(argparse.BooleanOptionalAction):
    """``--x/--no-x``, and optionally a second name for ``--no-x`` (``--keep-flagged``). The help
    is left as written: sweeps.cli.main.HelpFormatter adds the default."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        *,
        default: bool,
        help: str | None = None,
        negative_flag: str | None = None,
    ) -> None:
        super().__init__(option_strings, dest, default=default)
        self.help = help
        self.negative_flag = negative_flag
        if negative_flag is not None:
            self.option_strings = [*self.option_strings, negative_flag]

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        if option_string is None:
            return
        off = option_string == self.negative_flag or option_string.startswith("--no-")
        setattr(namespace, self.dest, not off)


def comma_separated(text: str) -> tuple[str, ...]:
    """``arc_easy,mmlu`` as a tuple; empty items dropped (``''`` is none)."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def flag_name(name: str, field: FieldInfo) -> str:
    """The flag a field is given on the command line: ``--state-dir`` for ``state_dir``."""
    return str(_hints(field).get("flag") or f"--{name.replace('_', '-')}")


class ArgumentSettings(TypedDict, total=False):
    """The keywords of ``ArgumentParser.add_argument`` a field sets."""

    action: type[argparse.Action]
    negative_flag: str | None  # Switch's
    type: Callable[[str], object]
    choices: tuple[object, ...]
    nargs: str
    default: object
    required: bool
    dest: str
    metavar: str
    help: str


def add_model_arguments(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One argument per field of ``model``: its own fields first, then each base class's."""
    for name in fields_in_order(model):
        field = model.model_fields[name]
        if _hints(field).get("positional"):
            parser.add_argument(name, **_value_settings(field))
        else:
            parser.add_argument(flag_name(name, field), **_flag_settings(name, field))


def fields_in_order(model: type[BaseModel]) -> list[str]:
    """The names of ``model``'s fields, the most specific class's first (a verb's own options
    before the ones it shares)."""
    names: list[str] = []
    for cls in model.__mro__:
        for name in vars(cls).get("__annotations__", {}):
            if name in model.model_fields and name not in names:
                names.append(name)
    return names


def options_model(function: Callable[[Options], int]) -> type[Options]:
    """The options model a verb's function takes: the annotation of its one parameter."""
    hints = typing.get_type_hints(function)
    hints.pop("return", None)
    model = next(iter(hints.values()), None)
    if len(hints) != 1 or not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{function.__name__}: a verb's function takes one options model")
    return cast("type[Options]", model)


def options_from_namespace(model: type[Options], namespace: argparse.Namespace) -> Options:
    """The parsed arguments as ``model``, checked by it; a value it refuses is a ConfigError
    naming the flag (an error a validator phrased for the user is raised as it is)."""
    values = {name: getattr(namespace, name) for name in model.model_fields}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _flag_error(model, exc) from None


def _flag_error(model: type[BaseModel], exc: ValidationError) -> Exception:
    lines = []
    for error in exc.errors():
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, Exception) and type(cause) is not ValueError:
            return cause  # e.g. DataError: already one line naming the flag
        name = str(error["loc"][0]) if error["loc"] else ""
        field = model.model_fields.get(name)
        where = name if field is None or _hints(field).get("positional") else flag_name(name, field)
        lines.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return ConfigError("\n".join(lines))


def _hints(field: FieldInfo) -> JsonDict:
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _flag_settings(name: str, field: FieldInfo) -> ArgumentSettings:
    settings = _value_settings(field)
    settings["dest"] = name
    if field.is_required():
        settings["required"] = True
    flag = _hints(field).get("flag")
    if isinstance(flag, str) and "action" not in settings:  # named after the flag, not the field
        settings.setdefault("metavar", flag.removeprefix("--").replace("-", "_").upper())
    return settings


def _value_settings(field: FieldInfo) -> ArgumentSettings:
    """What a field's type, default, description and hints make of its value."""
    kind, hints = _without_none(field.annotation), _hints(field)
    settings = ArgumentSettings(help=(field.description or "").rstrip("."))
    if not field.is_required():
        settings["default"] = field.get_default(call_default_factory=True)
    if isinstance(hints.get("metavar"), str):
        settings["metavar"] = str(hints["metavar"])
    origin = get_origin(kind)
    if kind is bool:
        negative = hints.get("negative_flag")
        settings.update(
            {"action": Switch, "negative_flag": negative if isinstance(negative, str) else None}
        )
    elif origin is Literal:
        choices = get_args(kind)
        settings.update({"choices": choices, "type": type(choices[0])})
        if "metavar" in settings:  # the choices are hidden behind it: listed in the help
            settings["help"] += "; one of " + ", ".join(map(str, choices))
    elif origin in (tuple, list) and hints.get("positional"):
        settings.update({"nargs": "*" if "default" in settings else "+", "type": get_args(kind)[0]})
    elif origin in (tuple, list):
        settings["type"] = comma_separated
    elif origin is dict:
        settings["type"] = str  # the model parses the text (PrepareOptions.columns)
    elif callable(kind):
        settings["type"] = kind
    else:
        raise TypeError(f"{field}: no command-line form for {kind}")
    return settings


def _without_none(annotation: object) -> object:
    """``Path | None`` -> ``Path``: a flag's value is never None; its absence is the default."""
    if get_origin(annotation) in (Union, types.UnionType):
        kept = [a for a in get_args(annotation) if a is not type(None)]
        if len(kept) == 1:
            return kept[0]
    return annotation
