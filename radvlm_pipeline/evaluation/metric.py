"""One metric's outcome: a number, or the reason it was not computed.

A metric whose model or endpoint is missing must never show up as a number (a 0.0 would read as a
terrible model), so every metric travels as a ``MetricValue`` that is either computed or carries its
reason all the way into the results tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Sends prompts to an LLM and returns one completion per prompt, None where the call failed. The second
# argument names, per prompt, the source dataset whose text the prompt carries (the LLM resource refuses
# credentialed data an endpoint is not approved for). The asset builds it on the LLM resource; tests pass
# a function.
TextCompleter = Callable[[Sequence[str], Sequence[str]], Sequence[str | None]]


class MetricUnavailable(RuntimeError):
    """Raised by a TextCompleter that may not answer at all (e.g. governance refuses the endpoint for a
    dataset): the metric is reported as not computed with this message, and nothing was sent."""


@dataclass(frozen=True)
class MetricValue:
    name: str
    value: float | None  # in ``unit``; None when not computed
    unit: str = "%"  # "%" (0-100) or "/10" (judge score)
    reason: str | None = None  # why it was not computed
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def computed(cls, name: str, value: float, unit: str = "%", **details: Any) -> MetricValue:
        return cls(name=name, value=float(value), unit=unit, details=details)

    @classmethod
    def not_computed(cls, name: str, reason: str, unit: str = "%", **details: Any) -> MetricValue:
        return cls(name=name, value=None, unit=unit, reason=reason, details=details)

    @property
    def is_computed(self) -> bool:
        return self.value is not None

    def display(self, digits: int = 1) -> str:
        return f"{self.value:.{digits}f}" if self.value is not None else "not computed"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "status": "computed" if self.is_computed else "not computed",
            "reason": self.reason,
            "details": self.details,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MetricValue:
        return cls(
            name=data["name"],
            value=data["value"],
            unit=data.get("unit", "%"),
            reason=data.get("reason"),
            details=data.get("details") or {},
        )


def percent(fraction: float) -> float:
    return 100.0 * float(fraction)
