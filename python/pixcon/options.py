"""The options every loss module passes to the loss op, checked once when the module is built."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Literal, Sequence

Denominator = Literal["all", "pair"]
Reduction = Literal["mean", "anchor_mean", "image_mean", "row_mean", "sum", "none"]
REDUCTIONS: tuple[str, ...] = ("mean", "anchor_mean", "image_mean", "row_mean", "sum", "none")


@dataclasses.dataclass(frozen=True)
class LossOptions:
    """temperature, ignore_index, denominator and self_positive of ``pixcon.contrastive_loss``."""

    temperature: float = 0.07
    ignore_index: int = 255
    denominator: Denominator = "all"
    self_positive: bool = False

    @classmethod
    def checked(cls, owner: str, **options: Any) -> LossOptions:
        """The options, or a ValueError / TypeError naming ``owner`` and the bad option."""
        made = cls(**options)
        check_positive(owner, "temperature", made.temperature)
        if isinstance(made.ignore_index, bool) or not isinstance(made.ignore_index, int):
            raise TypeError(f"{owner}: ignore_index must be an int, got {made.ignore_index!r}")
        if made.denominator not in ("all", "pair"):
            raise ValueError(f'{owner}: denominator must be "all" or "pair", got {made.denominator!r}')
        return dataclasses.replace(made, temperature=float(made.temperature),
                                   self_positive=bool(made.self_positive))

    def replace(self, **changes: Any) -> LossOptions:
        return dataclasses.replace(self, **changes)

    def as_kwargs(self) -> dict[str, Any]:
        # not dataclasses.asdict: it deep-copies, which torch.compile (torch 2.10) cannot trace
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


def check_positive(owner: str, name: str, value: Any) -> None:
    """A TypeError unless ``value`` is a real number, a ValueError unless it is finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a number, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{owner}: {name} must be a positive finite number, got {value}")


def check_reduction(owner: str, reduction: str, allowed: Sequence[str] = REDUCTIONS) -> None:
    if reduction not in allowed:
        raise ValueError(f"{owner}: reduction must be one of {tuple(allowed)}, got {reduction!r}")


def check_count(owner: str, name: str, value: Any, least: int = 1) -> int:
    """``value``, or a TypeError unless it is an int, a ValueError unless it is >= ``least``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}")
    if value < least:
        raise ValueError(f"{owner}: {name} must be >= {least}, got {value}")
    return int(value)


def check_size(owner: str, size: Any) -> tuple[int, int] | None:
    """``size`` as (h, w) of positive ints, or None; a TypeError unless it is a pair of ints, a
    ValueError for a side < 1."""
    if size is None:
        return None
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2:
        raise TypeError(f"{owner}: size must be None or a pair (h, w) of ints, got {size!r}")
    return (check_count(owner, "size", size[0]), check_count(owner, "size", size[1]))


def _option(name: str) -> property:
    return property(lambda module: getattr(module.options, name), doc=f"The loss option {name} (read-only).")


class HasLossOptions:
    """Read-only views of a loss module's ``options`` under their usual names."""

    options: LossOptions
    temperature = _option("temperature")
    ignore_index = _option("ignore_index")
    denominator = _option("denominator")
    self_positive = _option("self_positive")
