"""The ``search_space:`` section: its grammar (ranges, choices, ratios of r) and its fields,
derived from the trainer's :class:`~trainers.config.Hyperparameters`.

Each field of ``Hyperparameters`` is a knob here: its values are checked against the field's
type and bounds, and its default is the field's ``Search`` default (else its own default; else
None, when ``training:`` holds its fixed value). Adding a searchable knob is adding a field there.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, Any, Literal

import annotated_types
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    TypeAdapter,
    ValidationError,
    create_model,
)
from pydantic.fields import FieldInfo

from evals.config import Section
from trainers.config import Hyperparameters, Search
from trainers.targets import join_targets, split_targets


class LogUniform(Section):
    type: Literal["loguniform"]
    low: float
    high: float


class Uniform(Section):
    type: Literal["uniform"]
    low: float
    high: float


class IntRange(Section):
    type: Literal["int"]
    low: int
    high: int
    step: int = 1


class Choice(Section):
    type: Literal["choice"]
    values: list[Any]  # as written; each knob's validator checks them, nothing coerces them


class RatioOfR(Section):
    """``lora_alpha = ratio * lora_r``, with the ratio chosen from ``values``."""

    type: Literal["ratio_of_r"]
    values: list[float]


ParamSpec = float | int | LogUniform | Uniform | IntRange | Choice | RatioOfR
Spec = ParamSpec | str  # a fixed target set is a string


SPEC_TYPES: dict[str, type[BaseModel]] = {
    "loguniform": LogUniform,
    "uniform": Uniform,
    "int": IntRange,
    "choice": Choice,
    "ratio_of_r": RatioOfR,
}


YAML11_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def yaml_number(value: object) -> object:
    """``1e-4`` as the number it is: PyYAML follows YAML 1.1, which reads an exponent without a
    dot (``1e-4``, ``3e-5``) as a string; YAML 1.2 and every fine-tuning guide mean a number."""
    if isinstance(value, str) and YAML11_FLOAT.match(value.strip()):
        return float(value)
    return value


def _expand_shorthand(value: object) -> object:
    """A list means a categorical choice; a scalar a fixed value; a mapping names its ``type``.

    Resolving the mapping here (not through pydantic's union) keeps errors to one line each.
    """
    value = yaml_number(value)
    if isinstance(value, list):
        value = {"type": "choice", "values": [yaml_number(v) for v in value]}
    if isinstance(value, dict) and isinstance(value.get("values"), list):
        value = {**value, "values": [yaml_number(v) for v in value["values"]]}
    if isinstance(value, dict):
        kind = value.get("type")
        if kind not in SPEC_TYPES:
            raise ValueError(f"type must be one of {', '.join(SPEC_TYPES)}; got {kind!r}")
        try:
            return SPEC_TYPES[kind].model_validate(value)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: "
                + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"].lower())
                for e in exc.errors()
            )
            raise ValueError(f"{kind}: {problems}") from None
    if isinstance(value, (bool, str)) or not isinstance(value, (int, float)):
        raise ValueError(
            f"expected a number, a list of choices or a mapping with 'type', got {value!r}"
        )
    return value


def _param_values(spec: ParamSpec) -> list[float]:
    """Every value a spec can produce at its bounds (enough to check its domain)."""
    if isinstance(spec, (LogUniform, Uniform, IntRange)):
        if spec.high < spec.low:
            raise ValueError(f"high ({spec.high}) must be >= low ({spec.low})")
        if isinstance(spec, IntRange) and spec.step < 1:
            raise ValueError(f"step must be >= 1, got {spec.step}")
        return [spec.low, spec.high]
    if isinstance(spec, (Choice, RatioOfR)):
        if not spec.values:
            raise ValueError("choice list is empty: give at least one value")
        return list(spec.values)
    return [spec]


@dataclass(frozen=True)
class Bounds:
    """A knob's domain: ``low``/``high`` included unless open."""

    low: float = -math.inf
    low_open: bool = False
    high: float = math.inf
    high_open: bool = False


def _domain(
    *, bounds: Bounds, integer: bool = False, ratio_of_r: bool = False
) -> Callable[[ParamSpec], ParamSpec]:
    """An after-validator checking that every value a spec can yield lies in the domain."""

    def check(spec: ParamSpec) -> ParamSpec:
        if isinstance(spec, RatioOfR):
            return _ratios(spec) if ratio_of_r else _no_ratio(spec)
        for value in _param_values(spec):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"values must be numbers, got {value!r}")
            if integer and (isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"values must be whole numbers, got {value!r}")
            low, high = bounds.low, bounds.high
            if not math.isfinite(value) or value < low or (bounds.low_open and value == low):
                bound = f"> {low:g}" if bounds.low_open else f">= {low:g}"
                raise ValueError(f"values must be {bound}, got {value!r}")
            if value > high or (bounds.high_open and value == high):
                bound = f"< {high:g}" if bounds.high_open else f"<= {high:g}"
                raise ValueError(f"values must be {bound}, got {value!r}")
        if isinstance(spec, LogUniform) and spec.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {spec.low!r}")
        return spec

    return check


def _ratios(spec: RatioOfR) -> RatioOfR:
    for ratio in _param_values(spec):
        if ratio <= 0:
            raise ValueError(f"ratio_of_r values must be > 0, got {ratio!r}")
    return spec


def _no_ratio(spec: RatioOfR) -> RatioOfR:
    raise ValueError(f"'ratio_of_r' is only allowed for {', '.join(RATIO_KNOBS)}")


def _target_choice(value: object) -> Choice | str:
    """search_space.lora_target_modules: a choice among target sets, each a preset
    ("all-linear", "attention") or module names joined by commas ("q_proj,v_proj")."""

    def one(item: object) -> str:
        names = (
            split_targets(item)
            if isinstance(item, str)
            or (isinstance(item, list) and all(isinstance(n, str) for n in item))
            else []
        )
        if not names:
            raise ValueError(
                f"a target set is a preset (all-linear, attention) or module names "
                f"like 'q_proj,v_proj'; got {item!r}"
            )
        return join_targets(names)

    if isinstance(value, dict) and value.get("type") == "choice":
        value = value.get("values")
    if isinstance(value, list) and value:
        return Choice(type="choice", values=[one(item) for item in value])
    if isinstance(value, str):
        return one(value)
    raise ValueError("give a list of target sets, e.g. [attention, all-linear]")


_Shorthand = BeforeValidator(_expand_shorthand)
TargetSets = Annotated[Choice | str, BeforeValidator(_target_choice)]
KNOBS = tuple(Hyperparameters.model_fields)  # every searchable knob, in the trainer's order


def _search_of(field: FieldInfo) -> Search:
    return next((m for m in field.metadata if isinstance(m, Search)), Search())


RATIO_KNOBS = tuple(k for k, f in Hyperparameters.model_fields.items() if _search_of(f).ratio_of_r)
TARGET_KNOBS = tuple(
    k for k, f in Hyperparameters.model_fields.items() if _search_of(f).target_sets
)
INTEGER_KNOBS = frozenset(k for k, f in Hyperparameters.model_fields.items() if f.annotation is int)


def ratio_name(knob: str) -> str:
    """The name Optuna samples a ``ratio_of_r`` knob's ratio under (``lora_alpha_ratio``)."""
    return f"{knob}_ratio"


def _bounds(field: FieldInfo) -> Bounds:
    """The field's bounds (pydantic keeps them as annotated-types metadata)."""
    bounds = Bounds()
    for item in field.metadata:
        if isinstance(item, annotated_types.Gt):
            bounds = replace(bounds, low=_number(item.gt), low_open=True)
        elif isinstance(item, annotated_types.Ge):
            bounds = replace(bounds, low=_number(item.ge))
        elif isinstance(item, annotated_types.Lt):
            bounds = replace(bounds, high=_number(item.lt), high_open=True)
        elif isinstance(item, annotated_types.Le):
            bounds = replace(bounds, high=_number(item.le))
    return bounds


def _number(bound: object) -> float:
    if not isinstance(bound, (int, float)):
        raise TypeError(f"a knob's bound must be a number, got {bound!r}")
    return float(bound)


def _spec_type(field: FieldInfo) -> Any:
    """What search_space accepts for the knob: target sets, or numbers within its domain (a
    type expression, for create_model: there is no static type of type expressions yet)."""
    search = _search_of(field)
    if search.target_sets:
        return TargetSets
    if field.annotation not in (int, float):
        raise TypeError(
            f"search_space derives numeric knobs (int, float) and target sets; "
            f"{field.annotation} is neither: extend _spec_type for it"
        )
    integer = field.annotation is int
    check = _domain(bounds=_bounds(field), integer=integer, ratio_of_r=search.ratio_of_r)
    return Annotated[ParamSpec, _Shorthand, AfterValidator(check)]


def _field(field: FieldInfo) -> tuple[object, object]:
    """A knob's search_space field: its spec type and default (None: training's value holds)."""
    spec_type, search = _spec_type(field), _search_of(field)
    if search.default is not None:
        return spec_type, TypeAdapter(spec_type).validate_python(search.default)
    if not field.is_required():
        return spec_type, field.get_default(call_default_factory=True)
    return spec_type | None, None


if TYPE_CHECKING:

    class SearchSpace(Section):
        """What Optuna samples for each trial (typed for mypy as a knob -> spec lookup)."""

        def __getattr__(self, knob: str) -> Spec | None: ...

else:
    SearchSpace = create_model(
        "SearchSpace",
        __base__=Section,
        __module__=__name__,
        __doc__="What Optuna samples for each trial. A scalar fixes a value; a list is a "
        "categorical choice.",
        **{knob: _field(field) for knob, field in Hyperparameters.model_fields.items()},
    )
