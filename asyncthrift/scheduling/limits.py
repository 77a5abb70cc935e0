"""Rate limits: the `Limits` value, Anthropic's published tier presets, and model classes.

Anthropic limits each organisation per *model class* (Opus, Sonnet, Haiku, ...) in three
dimensions: requests, input tokens and output tokens per minute. The presets below are data
in one place so that a change of published numbers is a one-line edit; users can always pass
their own `Limits`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from ..errors import InvalidArgument

__all__ = ["PRESETS", "Limits", "LimitsSpec", "LimitsTable", "model_class"]

log = logging.getLogger("asyncthrift")


def _check_rate(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"Limits.{name} must be a positive number or None (unlimited), "
            f"got {type(value).__name__} {value!r}"
        )
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgument(
            f"Limits.{name} must be a positive number of units per period or None for "
            f"unlimited, got {value!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-minute limits for one (key, model class); `None` means unlimited.

    `period` is the refill window in seconds. Anthropic's is always 60; a shorter period
    compresses time for simulations and tests (the mock accepts the same value), so that a
    workload which would take minutes against real limits takes seconds with the same shape.
    """

    rpm: float | None = None
    itpm: float | None = None
    otpm: float | None = None
    period: float = 60.0

    def __post_init__(self) -> None:
        for name in ("rpm", "itpm", "otpm"):
            _check_rate(name, getattr(self, name))
        p = self.period
        if isinstance(p, bool) or not isinstance(p, int | float) or not math.isfinite(p) or p <= 0:
            raise InvalidArgument(f"Limits.period must be a positive number of seconds, got {p!r}")

    @property
    def unlimited(self) -> bool:
        return self.rpm is None and self.itpm is None and self.otpm is None

    def scaled(self, factor: float) -> Limits:
        """The same limits multiplied by `factor` (e.g. 0.5 to leave half a key to others)."""

        def mul(v: float | None) -> float | None:
            return None if v is None else v * factor

        return Limits(mul(self.rpm), mul(self.itpm), mul(self.otpm), self.period)


MODEL_CLASSES = ("opus", "sonnet", "haiku")

# Published limits, per tier and model class (Messages API). Sonnet 4.x and Opus 4.x share
# numbers; Haiku 4.5 has larger token limits from tier 1 and 3 upwards.
PRESETS: dict[str, dict[str, Limits]] = {
    "tier1": {
        "opus": Limits(50, 30_000, 8_000),
        "sonnet": Limits(50, 30_000, 8_000),
        "haiku": Limits(50, 50_000, 10_000),
    },
    "tier2": {
        "opus": Limits(1_000, 450_000, 90_000),
        "sonnet": Limits(1_000, 450_000, 90_000),
        "haiku": Limits(1_000, 450_000, 90_000),
    },
    "tier3": {
        "opus": Limits(2_000, 800_000, 160_000),
        "sonnet": Limits(2_000, 800_000, 160_000),
        "haiku": Limits(2_000, 1_000_000, 200_000),
    },
    "tier4": {
        "opus": Limits(4_000, 2_000_000, 400_000),
        "sonnet": Limits(4_000, 2_000_000, 400_000),
        "haiku": Limits(4_000, 4_000_000, 800_000),
    },
}


def model_class(model: str) -> str:
    """The rate-limit class of a model id: ``"opus"``, ``"sonnet"``, ``"haiku"`` or the id.

    Handles both naming schemes (``claude-sonnet-4-5`` and ``claude-3-5-sonnet-20241022``).
    An id of no known family is its own class, so it never shares another model's budget.
    """
    m = model.lower()
    for family in MODEL_CLASSES:
        if family in m:
            return family
    return m


LimitsSpec: TypeAlias = "Limits | str | Mapping[str, Limits] | None"


class LimitsTable:
    """Resolves a model id to its `Limits`, from any accepted form of the `limits=` argument.

    Accepted: `None` (unlimited until the server's headers say otherwise), one `Limits` for
    every model, a preset name (``"tier1"``..``"tier4"``), or a mapping from a model-family
    prefix (``"claude-sonnet"``, ``"haiku"``, an exact model id, or ``"*"``) to `Limits`.
    """

    __slots__ = ("_default", "_table", "_warned")

    def __init__(self, spec: object = None) -> None:
        self._table: dict[str, Limits] = {}
        self._default: Limits | None = None
        self._warned: set[str] = set()
        if spec is None:
            self._default = Limits()
        elif isinstance(spec, Limits):
            self._default = spec
        elif isinstance(spec, str):
            preset = PRESETS.get(spec.lower())
            if preset is None:
                raise InvalidArgument(
                    f"unknown limits preset {spec!r}: use one of {', '.join(PRESETS)}, "
                    "or pass Limits(rpm=..., itpm=..., otpm=...)"
                )
            self._table.update(preset)
        elif isinstance(spec, Mapping):
            for key, value in spec.items():
                if not isinstance(key, str) or not isinstance(value, Limits):
                    raise TypeError(
                        "limits mapping must map a model-family prefix (str) to Limits, "
                        f"got {key!r}: {type(value).__name__}"
                    )
                if key == "*":
                    self._default = value
                else:
                    self._table[model_class(key)] = value
        else:
            raise TypeError(
                "limits must be Limits, a preset name ('tier1'..'tier4'), a mapping of "
                f"model-family prefix to Limits, or None; got {type(spec).__name__}"
            )

    @property
    def configured(self) -> bool:
        """Whether any limit is configured (a preset, a mapping or a `Limits` with a rate)."""
        return bool(self._table) or (self._default is not None and not self._default.unlimited)

    @property
    def has_default(self) -> bool:
        """Whether a model of no listed class gets limits (one `Limits`, or ``"*"``)."""
        return self._default is not None and not self._default.unlimited

    def names(self, model: str) -> bool:
        """Whether the table has an entry of its own for `model` (by class or exact id)."""
        return model_class(model) in self._table or model.lower() in self._table

    def for_model(self, model: str) -> tuple[str, Limits]:
        """(model class, limits) for `model`; unknown classes fall back to ``"*"`` or none."""
        cls = model_class(model)
        found = self._table.get(cls)
        if found is None:
            found = self._table.get(model.lower())
        if found is None:
            found = self._default
        if found is None:
            if cls not in self._warned:
                self._warned.add(cls)
                log.warning(
                    "no limits configured for model class %r (model %r): it runs unlimited "
                    "until the server's rate-limit headers say otherwise",
                    cls,
                    model,
                )
            found = Limits()
        return cls, found
