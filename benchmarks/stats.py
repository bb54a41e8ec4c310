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
        return f"| {self.name} | {self.unit} | {self.n} | {self.p50:.1f} | {self.p95:.1f} | {self.p99:.1f} |"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def table(figures: list[Figure]) -> str:
    lines = ["| figure | unit | n | p50 | p95 | p99 |", "|---|---|---|---|---|---|"]
    lines += [f.row() for f in figures]
    return "\n".join(lines)


def ratios(ours: Figure, peers: list[Figure]) -> list[dict[str, object]]:
    """How many times faster our p50/p99 is than each peer's (peer / ours: > 1 means Corral is faster)."""
    return [{"ours": ours.name, "peer": p.name, "p50_speedup": p.p50 / ours.p50, "p99_speedup": p.p99 / ours.p99}
            for p in peers if ours.p50 > 0 and ours.p99 > 0]


def ratio_table(rows: list[dict[str, object]]) -> str:
    lines = ["| Corral figure | peer | peer p50 / ours | peer p99 / ours |", "|---|---|---|---|"]
    lines += [f"| {r['ours']} | {r['peer']} | {r['p50_speedup']:.1f}x | {r['p99_speedup']:.1f}x |" for r in rows]
    return "\n".join(lines)
