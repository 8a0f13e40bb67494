"""The table: one row per figure, ours against LiteLLM, the ratio, the target and whether it is met."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Values of rows in these units are stored in seconds and shown scaled.
SCALE = {"us": 1e6, "ms": 1e3}
UNIT_TEXT = {"us": "µs", "x": "×"}


@dataclass
class Row:
    id: str
    label: str
    unit: str
    values: dict[str, dict[str, Any]]  # library -> {"median", optionally "min", "max", ...}
    target: tuple[str, float] | None = None  # ("ratio_min", 20) / ("ours_max", 2)
    absolute_max: float | None = None  # ours' median must also be below this (stored units)
    ratio: bool = True
    higher_is_better: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        return SCALE.get(self.unit, 1.0)

    def median(self, lib: str) -> float | None:
        value = self.values.get(lib)
        return None if value is None else float(value["median"])

    def speedup(self) -> float | None:
        """How many times better ours is (LiteLLM / ours for times and sizes)."""
        ours, theirs = self.median("ours"), self.median("litellm")
        if not self.ratio or ours is None or theirs is None or ours == 0 or theirs == 0:
            return None
        return ours / theirs if self.higher_is_better else theirs / ours

    def met(self) -> bool | None:
        if self.target is None:
            return None
        kind, bound = self.target
        ours = self.median("ours")
        if ours is None:
            return None
        checks: list[bool] = []
        if kind == "ratio_min":
            ratio = self.speedup()
            if ratio is not None:
                checks.append(ratio >= bound)
        elif kind == "ours_max":
            checks.append(ours < bound if self.unit == "MB" else ours <= bound)
        if self.absolute_max is not None:
            checks.append(ours < self.absolute_max)
        return all(checks) if checks else None

    def target_text(self) -> str:
        parts = []
        if self.target is not None:
            kind, bound = self.target
            if kind == "ratio_min":
                parts.append(f"≥{bound:g}× faster")
            elif self.unit == "MB":
                parts.append(f"< {bound:g} MB")
            elif self.unit == "count":
                parts.append(f"{bound:g}")
            else:
                parts.append(f"≤ {bound:g}{UNIT_TEXT.get(self.unit, ' ' + self.unit)}")
        if self.absolute_max is not None:
            parts.append(
                f"< {self.absolute_max * self.scale:g} {UNIT_TEXT.get(self.unit, self.unit)}"
            )
        return ", ".join(parts) or "—"

    def cell(self, lib: str) -> str:
        value = self.values.get(lib)
        if value is None:
            return "—"
        text = number(value["median"] * self.scale)
        if (
            "min" in value
            and "max" in value
            and value.get("n", 2) > 1
            and value["min"] != value["max"]
        ):
            text += f" [{number(value['min'] * self.scale)}–{number(value['max'] * self.scale)}]"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "figure": self.label,
            "unit": self.unit,
            "scale": self.scale,
            "values": self.values,
            "ratio": self.speedup(),
            "target": self.target_text(),
            "met": self.met(),
            "extra": self.extra,
        }


def number(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _verdict(met: bool | None) -> str:
    return {True: "pass", False: "MISS", None: "—"}[met]


def _cells(row: Row, libs: list[str]) -> list[str]:
    unit = UNIT_TEXT.get(row.unit, row.unit)
    cells = [row.label, unit, row.cell("ours")]
    if "litellm" in libs:
        ratio = row.speedup()
        cells += [row.cell("litellm"), f"{ratio:,.1f}×" if ratio is not None else "—"]
    cells += [row.target_text(), _verdict(row.met())]
    return cells


def _header(libs: list[str]) -> list[str]:
    head = ["figure", "unit", "ours: median [min–max]"]
    if "litellm" in libs:
        head += ["LiteLLM: median [min–max]", "ratio (×better)"]
    return [*head, "target", "met"]


def render_table(rows: list[Row], libs: list[str]) -> str:
    table = [_header(libs)] + [_cells(r, libs) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    out = []
    for n, line in enumerate(table):
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(rows: list[Row], libs: list[str]) -> str:
    table = [_header(libs)] + [_cells(r, libs) for r in rows]
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in table[1:]]
    return "\n".join(lines)


def render_markdown(
    rows: list[Row], info: dict[str, Any], libs: list[str], errors: list[str]
) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"{info['date']}, commit `{info.get('commit')}`: budget-manager {info.get('budget-manager')}"
        f" vs litellm {info.get('litellm') if 'litellm' in libs else '(not run)'}, "
        f"Python {info['python']}, {info['cpus']} CPUs ({info['cpu']}), {info['platform']}. "
        f"Load average {info['loadavg_start'][0]:.2f} at start, "
        f"{info.get('loadavg_end', [0.0])[0]:.2f} at end; run took {info.get('seconds')} s.",
        "",
        markdown_table(rows, libs),
        "",
        "Times are medians over timed batches (each batch's wall time divided by its calls), "
        "[min–max] over the batches. Ratio = LiteLLM / ours (throughput: ours / LiteLLM).",
    ]
    if errors:
        lines += ["", "Errors:", ""] + [f"- {e}" for e in errors]
    return "\n".join(lines) + "\n"
