"""``report.pdf``: the human summary of a bundle (period, counts, SLA, per-worker table, chart).

Statistics are gathered while records stream past with bounded memory: counters, one 8-byte
integer per termination for the time-to-revoke percentiles, and at most ``TABLE_ROWS`` table
rows (SLA misses and unverified runs first, since those are what an auditor reads). The full
per-worker list is ``terminations.csv``; the PDF says so when it shows fewer rows.
"""

from __future__ import annotations

import io
from array import array
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.shapes import Drawing, Line, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

TABLE_ROWS = 300
# Time-to-revoke buckets as fractions of the SLA: the chart reads the same for any SLA.
BUCKETS = [1 / 60, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0]


@dataclass
class ReportStats:
    """Bounded-memory summary of the records in a bundle."""

    records: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    terminations: int = 0
    sla_met: int = 0
    not_revoked: int = 0
    sla_seconds: Counter[int] = field(default_factory=Counter)
    ttr_ms: array[int] = field(default_factory=lambda: array("q"))
    first_received: str | None = None
    last_received: str | None = None
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    others: list[dict[str, Any]] = field(default_factory=list)
    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 2))

    def add(self, record: Mapping[str, Any], row: Mapping[str, Any] | None) -> None:
        self.records += 1
        self.kinds[str(record.get("kind"))] += 1
        received = (record.get("trigger") or {}).get("received_at")
        if isinstance(received, str):
            if self.first_received is None or received < self.first_received:
                self.first_received = received
            if self.last_received is None or received > self.last_received:
                self.last_received = received
        if row is None:
            return
        self.terminations += 1
        status = str(row.get("status"))
        self.statuses[status] += 1
        sla = row.get("sla_seconds")
        if isinstance(sla, int):
            self.sla_seconds[sla] += 1
        met = row.get("sla_met") is True
        self.sla_met += met
        ttr = row.get("time_to_revoke_ms")
        if isinstance(ttr, int) and not isinstance(ttr, bool):
            self.ttr_ms.append(ttr)
            fraction = ttr / (sla * 1000) if isinstance(sla, int) and sla > 0 else float("inf")
            bucket = next((i for i, b in enumerate(BUCKETS) if fraction < b), len(BUCKETS))
            self.bucket_counts[bucket] += 1
        else:
            self.not_revoked += 1
            self.bucket_counts[-1] += 1
        exceptional = not met or status != "verified"
        target = self.exceptions if exceptional else self.others
        if len(target) < TABLE_ROWS:
            target.append(dict(row))

    @property
    def sla_met_percent(self) -> float | None:
        return None if not self.terminations else 100.0 * self.sla_met / self.terminations

    def percentile_ms(self, p: float) -> int | None:
        if not self.ttr_ms:
            return None
        ordered = sorted(self.ttr_ms)
        return ordered[min(len(ordered) - 1, int(p * (len(ordered) - 1) + 0.5))]

    def main_sla(self) -> int | None:
        return self.sla_seconds.most_common(1)[0][0] if self.sla_seconds else None


def _duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    seconds = ms / 1000
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _nice_step(top: int) -> int:
    """A 1-2-5 axis step giving about five gridlines."""
    raw = max(1, top // 5)
    magnitude = int(10 ** (len(str(raw)) - 1))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def _chart(stats: ReportStats, width: float) -> Drawing:
    sla = stats.main_sla() or 3600
    edges = [0.0, *BUCKETS]
    labels = []
    for lo, hi in zip(edges, BUCKETS, strict=False):
        labels.append(f"{lo * sla / 60:.3g}-{hi * sla / 60:.3g} min")
    labels.append(f">{BUCKETS[-1] * sla / 60:.3g} min")
    labels.append("not revoked")
    height = 70 * mm
    drawing = Drawing(width, height)
    chart = VerticalBarChart()
    chart.x, chart.y = int(15 * mm), int(18 * mm)
    chart.width, chart.height = int(width - 25 * mm), int(height - 30 * mm)
    chart.data = [stats.bucket_counts]
    chart.categoryAxis.categoryNames = labels
    chart.categoryAxis.labels.fontSize = 7
    chart.categoryAxis.labels.angle = 20
    chart.categoryAxis.labels.boxAnchor = "ne"
    chart.valueAxis.valueMin = 0
    chart.valueAxis.labels.fontSize = 7
    top = max(stats.bucket_counts) if any(stats.bucket_counts) else 1
    chart.valueAxis.valueMax = top + max(1, top // 10)
    chart.valueAxis.valueStep = _nice_step(top)
    chart.bars.strokeWidth = 0
    inside = BUCKETS.index(1.0) + 1
    for i in range(len(labels)):
        chart.bars[(0, i)].fillColor = colors.HexColor("#2e7d32" if i < inside else "#c62828")
    drawing.add(chart)
    # The SLA boundary sits between the last bucket inside it and the first outside.
    x = chart.x + chart.width * inside / len(labels)
    drawing.add(
        Line(
            x,
            chart.y,
            x,
            chart.y + chart.height,
            strokeColor=colors.black,
            strokeDashArray=[3, 2],
            strokeWidth=1,
        )
    )
    drawing.add(String(x + 2, chart.y + chart.height - 8, f"SLA {sla // 60:g} min", fontSize=8))
    drawing.add(
        String(
            chart.x, height - 8, "Terminations by time to revoke (green: inside SLA)", fontSize=9
        )
    )
    return drawing


def render_pdf(
    stats: ReportStats,
    *,
    query: Mapping[str, str | None],
    origin: str,
    tree_size: int,
    generator_version: str,
    generated_at: str,
) -> bytes:
    """Render the summary; deterministic for the same inputs apart from reportlab's ids."""
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=landscape(A4),
        leftMargin=12 * mm,
        rightMargin=12 * mm,
        topMargin=12 * mm,
        bottomMargin=12 * mm,
        title="Termination evidence report",
        author=f"lifecycle {generator_version}",
        invariant=1,
    )
    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=8, leading=10)
    story: list[Any] = [Paragraph("Termination evidence report", styles["Title"])]

    since, until, worker = query.get("since"), query.get("until"), query.get("worker")
    period = f"{since or 'start of log'} to {until or generated_at}"
    sla_pct = stats.sla_met_percent
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(stats.kinds.items()))
    slowest = max(stats.ttr_ms) if stats.ttr_ms else None
    facts = [
        ["Period", period],
        ["Worker filter", worker or "all workers"],
        ["Log", f"{origin}, checkpoint tree size {tree_size}"],
        ["HR events received", f"{stats.first_received or '-'} to {stats.last_received or '-'}"],
        [
            "Evidence records",
            f"{stats.records} ({kinds or 'none'})",
        ],
        ["Terminations", str(stats.terminations)],
        ["Status", ", ".join(f"{k}: {v}" for k, v in sorted(stats.statuses.items())) or "-"],
        [
            "SLA met",
            "-"
            if sla_pct is None
            else f"{stats.sla_met} of {stats.terminations} ({sla_pct:.1f} %)",
        ],
        ["SLA", ", ".join(f"{s} s ({n})" for s, n in sorted(stats.sla_seconds.items())) or "-"],
        [
            "Time to revoke",
            f"median {_duration(stats.percentile_ms(0.5))}, 95th percentile "
            f"{_duration(stats.percentile_ms(0.95))}, max {_duration(slowest)}, "
            f"not revoked {stats.not_revoked}",
        ],
        ["Generated", f"{generated_at} by {generator_version}"],
    ]
    facts_table = Table(facts, colWidths=[45 * mm, None], hAlign="LEFT")
    facts_table.setStyle(
        TableStyle(
            [
                ("FONTSIZE", (0, 0), (-1, -1), 9),
                ("FONTNAME", (0, 0), (0, -1), "Helvetica-Bold"),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story += [facts_table, Spacer(1, 4 * mm), _chart(stats, doc.width), Spacer(1, 4 * mm)]

    shown = stats.exceptions + stats.others[: max(0, TABLE_ROWS - len(stats.exceptions))]
    shown.sort(key=lambda r: int(r["seq"]))
    story.append(Paragraph("Terminations", styles["Heading2"]))
    note = (
        f"Showing {len(shown)} of {stats.terminations} terminations"
        + (", SLA misses and unverified runs first" if len(shown) < stats.terminations else "")
        + ". terminations.csv lists every termination with per-system disable and verify times;"
        " every row is backed by a signed record (records/&lt;seq&gt;.json)."
    )
    story.append(Paragraph(note, small))
    head = [
        "seq",
        "worker",
        "engagement",
        "vendor",
        "HR received",
        "systems",
        "time to revoke",
        "SLA met",
        "status",
    ]
    rows: list[list[str]] = [head]
    for r in shown:
        rows.append(
            [
                str(r["seq"]),
                str(r.get("worker_id") or ""),
                str(r.get("engagement") or ""),
                str(r.get("vendor") or ""),
                str(r.get("hr_received_at") or ""),
                ", ".join(sorted(r.get("systems") or {})),
                _duration(r.get("time_to_revoke_ms")),
                "yes" if r.get("sla_met") is True else "NO",
                str(r.get("status") or ""),
            ]
        )
    table = Table(rows, repeatRows=1, hAlign="LEFT")
    style: list[Any] = [
        ("FONTSIZE", (0, 0), (-1, -1), 7),
        ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e0e0e0")),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
    ]
    for i, r in enumerate(shown, start=1):
        if r.get("sla_met") is not True or r.get("status") != "verified":
            style.append(("TEXTCOLOR", (0, i), (-1, i), colors.HexColor("#c62828")))
    table.setStyle(TableStyle(style))
    story.append(table)
    doc.build(story)
    return buf.getvalue()
