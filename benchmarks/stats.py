"""Percentiles and the printed/JSON report of a benchmark run."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass


@dataclass
class Figure:
    name: str
    unit: str
    n: int
    p50: float
    p95: float
    p99: float
    mean: float

    @classmethod
    def of(cls, name: str, samples_ms: list[float], unit: str = "ms") -> Figure:
        ordered = sorted(samples_ms)

        def pct(p: float) -> float:
            if not ordered:
                return float("nan")
            k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
            return ordered[k]

        return cls(name, unit, len(ordered), pct(50), pct(95), pct(99), statistics.fmean(ordered) if ordered else 0.0)

    def row(self) -> str:
        return f"| {self.name} | {self.n} | {self.p50:.1f} | {self.p95:.1f} | {self.p99:.1f} |"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def table(figures: list[Figure]) -> str:
    lines = ["| figure (ms) | n | p50 | p95 | p99 |", "|---|---|---|---|---|"]
    lines += [f.row() for f in figures]
    return "\n".join(lines)
