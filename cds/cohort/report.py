# ruff: noqa: E501  (the inline HTML/CSS template keeps its natural line lengths)
"""report.html: one self-contained page (inline CSS, SVG and a little JS; nothing fetched).

A quality team opens it from a shared drive or an e-mail, often without internet, so charts are
drawn server-side as SVG, the worklist is a plain table sorted and filtered by a few lines of
inline JavaScript, and its CSV download is a ``data:`` link built into the page. The worklist comes
first: what must be acted on (critical and warning alerts, open data gaps), in clinical words with
the value and its date; recommendations follow in their own section. Every number on the page comes
from summary.json and the output tables, so the page reconciles with the files next to it.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import orjson
import pyarrow as pa  # type: ignore[import-untyped]

from cds.cohort.outputs import read_table
from cds.findings.actions import format_day

WORKLIST_LIMIT = 5000
LVEF_CHART_PATIENTS = 8
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
COLORS = {"critical": "#c62828", "warning": "#ef8f00", "info": "#1976d2", "bar": "#455a64"}
PALETTE = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#1f78b4", "#666666")
# Rule parameters the charts draw as thresholds (read from the rules the cohort was run with).
REPORT_PARAMETERS = ("lvef_hold_below", "lvef_lower_limit_normal", "lvef_interval_days", "lab_recency_days")
WORKLIST_CSV_COLUMNS = (
    "severity",
    "identifier",
    "patient",
    "action",
    "date",
    "code",
    "kind",
    "drug",
    "review_required",
    "rule_id",
    "rule_version",
)

# Display bins for the lab charts, with the clinical-spec §5 grade boundaries (descriptive only:
# the alerts themselves come from the rule parameters).
PLATELET_BINS = [
    ("grade 4 (<25)", 0, 25),
    ("grade 3 (25-<50)", 25, 50),
    ("grade 2 (50-<75)", 50, 75),
    ("grade 1 (75-<150)", 75, 150),
    ("normal (>=150)", 150, float("inf")),
]
ANC_BINS = [
    ("grade 4 (<0.5)", 0, 0.5),
    ("grade 3 (0.5-<1.0)", 0.5, 1.0),
    ("grade 2 (1.0-<1.5)", 1.0, 1.5),
    ("grade 1 (1.5-<2.0)", 1.5, 2.0),
    ("normal (>=2.0)", 2.0, float("inf")),
]
TRANSAMINASE_BINS = [
    ("<=1x ULN", 0, 1.0000001),
    ("grade 1 (>1-2.5x)", 1.0000001, 2.5000001),
    ("grade 2 (>2.5-5x)", 2.5000001, 5.0000001),
    ("grade 3 (>5-20x)", 5.0000001, 20.0000001),
    ("grade 4 (>20x)", 20.0000001, float("inf")),
]
BILIRUBIN_BINS = [
    ("<=1x ULN", 0, 1.0000001),
    ("grade 1 (>1-1.5x)", 1.0000001, 1.5000001),
    ("grade 2 (>1.5-3x)", 1.5000001, 3.0000001),
    ("grade 3 (>3-10x)", 3.0000001, 10.0000001),
    ("grade 4 (>10x)", 10.0000001, float("inf")),
]


@dataclass
class Bar:
    """One bar of a chart."""

    label: str
    value: int
    color: str = COLORS["bar"]
    tooltip: str = ""


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "\u2026"


def bar_chart(bars: list[Bar], chart_id: str, title: str, label_w: int = 260, clip: int = 40) -> str:
    """A horizontal bar chart as inline SVG (labels and counts are real text, visible to tests)."""
    width, row_h = 640, 22
    top = max((b.value for b in bars), default=0) or 1
    height = row_h * max(len(bars), 1) + 10
    parts = [
        f'<svg id="{chart_id}" class="chart" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
    ]
    for i, b in enumerate(bars):
        y = 5 + i * row_h
        length = (width - label_w - 70) * b.value / top
        tip = f"<title>{escape(b.tooltip or b.label)}: {b.value}</title>"
        parts.append(
            f'<g>{tip}<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" class="lbl">{escape(_clip(b.label, clip))}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{length:.1f}" height="{row_h - 6}" fill="{b.color}"/>'
            f'<text x="{label_w + length + 5:.1f}" y="{y + 15}" class="val">{b.value}</text></g>'
        )
    if not bars:
        parts.append('<text x="10" y="20" class="lbl">no data</text>')
    parts.append("</svg>")
    return "".join(parts)


def _legend(items: Sequence[tuple[str, str]], x: float, y: float) -> str:
    parts = ['<g class="legend">']
    for i, (label, color) in enumerate(items):
        yy = y + i * 16
        parts.append(
            f'<rect x="{x}" y="{yy - 9}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 15}" y="{yy}" class="lbl">{escape(label)}</text>'
        )
    parts.append("</g>")
    return "".join(parts)


def stacked_chart(rows: list[tuple[str, dict[str, int]]], chart_id: str, title: str) -> str:
    """Patients per drug, split by severity (stacked horizontal bars with a legend)."""
    width, label_w, row_h, legend_h = 640, 200, 24, 24
    top = max((sum(c.values()) for _, c in rows), default=0) or 1
    height = legend_h + row_h * max(len(rows), 1) + 10
    parts = [
        f'<svg id="{chart_id}" class="chart" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        '<g class="legend">'
        f'<rect x="{label_w}" y="5" width="10" height="10" fill="{COLORS["critical"]}"/>'
        f'<text x="{label_w + 15}" y="14" class="lbl">critical</text>'
        f'<rect x="{label_w + 90}" y="5" width="10" height="10" fill="{COLORS["warning"]}"/>'
        f'<text x="{label_w + 105}" y="14" class="lbl">warning</text></g>',
    ]
    for i, (label, counts) in enumerate(rows):
        y = legend_h + i * row_h
        x = float(label_w)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end" class="lbl">{escape(label)}</text>'
        )
        for severity in ("critical", "warning"):
            n = counts.get(severity, 0)
            if not n:
                continue
            length = (width - label_w - 70) * n / top
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 4}" width="{length:.1f}" height="{row_h - 8}" fill="{COLORS[severity]}" '
                f'data-severity="{severity}" data-count="{n}"><title>{escape(label)}, {severity}: {n} patient(s)</title></rect>'
            )
            x += length
        parts.append(f'<text x="{x + 5:.1f}" y="{y + 16}" class="val">{sum(counts.values())}</text>')
    if not rows:
        parts.append(f'<text x="10" y="{legend_h + 16}" class="lbl">no alerts</text>')
    parts.append("</svg>")
    return "".join(parts)


def days_chart(days: list[int | None], threshold: int | None, chart_id: str, title: str, what: str) -> str:
    """Histogram of days since the last result, the recency threshold drawn as a dashed line.

    Bins beyond the threshold (and patients with no result at all) are red: they are overdue."""
    base = [0, 1, 3, 7, 14, 30, 60, 180, 365]
    # A result exactly ``threshold`` days old is still in time: the first overdue bin starts after it.
    edges = sorted(set(base + ([threshold + 1] if threshold is not None else [])))
    bins: list[tuple[str, int, int]] = []
    for lo, hi in zip(edges, [*edges[1:], 10**9], strict=True):
        label = f"{lo}-{hi - 1}" if hi - 1 > lo else f"{lo}"
        bins.append((label if hi < 10**9 else f">={lo}", lo, hi))
    counts = [0] * len(bins)
    none = 0
    for d in days:
        if d is None:
            none += 1
            continue
        for i, (_, lo, hi) in enumerate(bins):
            if lo <= d < hi:
                counts[i] += 1
                break
    width, height, left, bottom, top_y = 640, 240, 40, 190, 44
    n_bars = len(bins) + 1
    slot = (width - left - 10) / n_bars
    top = max([*counts, none]) or 1
    overdue = sum(
        c for c, (_, lo, _) in zip(counts, bins, strict=True) if threshold is not None and lo > threshold
    )
    parts = [
        f'<svg id="{chart_id}" class="chart" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f'<line x1="{left}" x2="{width - 10}" y1="{bottom}" y2="{bottom}" stroke="#999"/>',
    ]
    for i, ((label, lo, _), n) in enumerate(
        [*zip(bins, counts, strict=True), (("none on file", -1, 0), none)]
    ):
        x = left + i * slot
        h = (bottom - top_y) * n / top
        late = label == "none on file" or (threshold is not None and lo > threshold)
        color = COLORS["critical"] if late else COLORS["bar"]
        parts.append(
            f'<rect x="{x + 3:.1f}" y="{bottom - h:.1f}" width="{slot - 6:.1f}" height="{h:.1f}" fill="{color}">'
            f"<title>{escape(label)} days: {n}</title></rect>"
            f'<text x="{x + slot / 2:.1f}" y="{bottom - h - 4:.1f}" text-anchor="middle" class="val">{n}</text>'
            f'<text x="{x + slot / 2:.1f}" y="{bottom + 14}" text-anchor="middle" class="tick">{escape(label)}</text>'
        )
    parts.append(
        f'<text x="{left}" y="{bottom + 32}" class="lbl">days since the last {escape(what)} (as of the run)</text>'
    )
    if threshold is not None:
        index = next(i for i, (_, lo, _) in enumerate(bins) if lo > threshold)
        x = left + index * slot
        parts.append(
            f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="{top_y - 30}" y2="{bottom}" stroke="{COLORS["critical"]}" stroke-dasharray="5,3"/>'
            f'<text x="{x + 4 if x < width / 2 else x - 4:.1f}" y="{top_y - 20}" text-anchor="{"start" if x < width / 2 else "end"}" '
            f'class="lbl threshold-label">due every {threshold} days: {overdue + none} overdue or none on file</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def lvef_trajectory_chart(
    series: list[tuple[str, str, list[tuple[str, float]]]],
    thresholds: list[tuple[float, str, str]],
    chart_id: str,
) -> str:
    """LVEF over time for the flagged patients: one labelled, coloured line each, a legend, thresholds.

    ``series``: (label, severity, [(ISO date, LVEF %)]); ``thresholds``: (value, label, colour)."""
    width, height, left, right, top, bottom = 640, 330, 50, 400, 20, 290
    days = [date.fromisoformat(d) for _, _, pts in series for d, _ in pts]
    first, last = (min(days), max(days)) if days else (date(2000, 1, 1), date(2000, 1, 2))
    span = max((last - first).days, 1)

    def x(d: str) -> float:
        return left + (date.fromisoformat(d) - first).days / span * (right - left)

    def y(v: float) -> float:
        return bottom - (min(max(v, 20.0), 80.0) - 20.0) / 60.0 * (bottom - top)

    parts = [
        f'<svg id="{chart_id}" class="chart" role="img" aria-label="LVEF trajectory of flagged patients" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
    ]
    for level in (20, 30, 40, 50, 60, 70, 80):
        parts.append(
            f'<line x1="{left}" x2="{right}" y1="{y(level):.1f}" y2="{y(level):.1f}" stroke="#eee"/>'
            f'<text x="{left - 6}" y="{y(level) + 4:.1f}" text-anchor="end" class="tick">{level}%</text>'
        )
    for value, label, color in thresholds:
        parts.append(
            f'<line class="threshold" x1="{left}" x2="{right}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="{color}" stroke-dasharray="6,3"/>'
            f'<text x="{left + 4}" y="{y(value) - 4:.1f}" class="lbl threshold-label" fill="{color}">{escape(label)}</text>'
        )
    if days:
        parts.append(
            f'<text x="{left}" y="{height - 8}" class="tick">{escape(format_day(first.isoformat()) or "")}</text>'
            f'<text x="{right}" y="{height - 8}" text-anchor="end" class="tick">{escape(format_day(last.isoformat()) or "")}</text>'
        )
    legend: list[tuple[str, str]] = []
    for i, (label, severity, pts) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in pts)
        dash = "" if severity == "critical" else ' stroke-dasharray="2,2"'
        parts.append(
            f'<g class="patient-line" data-patient="{escape(label)}"><title>{escape(label)}: '
            + escape(", ".join(f"{format_day(d)} {v:g}%" for d, v in pts))
            + f'</title><polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"{dash}/>'
            + "".join(f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="3" fill="{color}"/>' for d, v in pts)
            + "</g>"
        )
        legend.append((f"{_clip(label, 24)}: {pts[-1][1]:g}%", color))
    parts.append(_legend(legend, right + 15, top + 10))
    if series:
        ly = top + 10 + 16 * len(series) + 8
        parts.append(
            f'<g class="legend"><line x1="{right + 15}" x2="{right + 35}" y1="{ly}" y2="{ly}" stroke="#333" stroke-width="2"/>'
            f'<text x="{right + 40}" y="{ly + 4}" class="tick">critical</text>'
            f'<line x1="{right + 95}" x2="{right + 115}" y1="{ly}" y2="{ly}" stroke="#333" stroke-width="2" stroke-dasharray="2,2"/>'
            f'<text x="{right + 120}" y="{ly + 4}" class="tick">warning</text></g>'
        )
    if not series:
        parts.append(
            f'<text x="{left + 20}" y="{top + 30}" class="lbl">no patient with an LVEF alert or gap</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _bins(values: Iterable[float | None], bins: Sequence[tuple[str, float, float]]) -> list[Bar]:
    counts = Counter()  # type: Counter[str]
    for v in values:
        if v is None:
            continue
        for label, lo, hi in bins:
            if lo <= v < hi:
                counts[label] += 1
                break
    colors = [COLORS["critical"], COLORS["critical"], COLORS["warning"], COLORS["info"], COLORS["bar"]]
    if bins[0][0].startswith("<="):
        colors = list(reversed(colors))
    return [Bar(label, counts[label], colors[i]) for i, (label, _, _) in enumerate(bins)]


TEMPLATE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>HER2 cohort review - {{ s.as_of[:10] }}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:12px 24px;color:#222;max-width:1400px}
h1{font-size:20px;margin:0 8px 0 0;display:inline}h2{font-size:16px;margin:22px 0 6px;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:12px}.cards{display:flex;flex-wrap:wrap;gap:8px;margin:8px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:3px 10px;min-width:90px}
.card .n{font-size:18px;font-weight:600}.card .t{font-size:11px;color:#555}
.ok{color:#2e7d32}.bad{color:#c62828}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(640px,1fr));gap:8px}
.chart .lbl{font-size:12px;fill:#333}.chart .val{font-size:12px;fill:#111}.chart .tick{font-size:10.5px;fill:#555}
table{border-collapse:collapse;font-size:12.5px;width:100%}th,td{border-bottom:1px solid #eee;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f5f5f5;cursor:pointer;position:sticky;top:0;user-select:none}th.sorted-asc::after{content:" \\25B2"}
th.sorted-desc::after{content:" \\25BC"}td.num{text-align:right;font-variant-numeric:tabular-nums}
.sev-critical{color:#c62828;font-weight:600}.sev-warning{color:#b26a00;font-weight:600}.sev-info{color:#1976d2}
code{font-size:11.5px;color:#555}#filter{padding:4px;width:300px;margin:0 8px 6px 0}
#worklist td:nth-child(4){white-space:nowrap}.tools{display:flex;align-items:center;gap:8px}.button{border:1px solid #1976d2;border-radius:4px;padding:4px 10px;color:#1976d2;text-decoration:none;font-size:13px;margin-bottom:6px}
</style></head><body>
<header><h1>HER2 cohort review</h1><span class="meta">as of {{ s.as_of }} &middot; input {{ s.input }} ({{ s.input_kind }}) &middot; rules digest
<code>{{ s.rules_digest[:12] }}</code> &middot; {{ s.executor }} &middot; {{ s.partitions }} partitions</span></header>
<div class="cards">
<div class="card"><div class="n" id="n-patients-in">{{ s.patients_in }}</div><div class="t">patients in</div></div>
<div class="card"><div class="n" id="n-evaluated">{{ s.evaluated }}</div><div class="t">evaluated</div></div>
<div class="card"><div class="n" id="n-rejected">{{ s.rejected }}</div><div class="t">rejected (errors.jsonl)</div></div>
<div class="card"><div class="n sev-critical" id="n-needs-action">{{ needs_action }}</div><div class="t">patients needing action</div></div>
<div class="card"><div class="n" id="n-actions">{{ actions_total }}</div><div class="t">actions (alerts, data gaps)</div></div>
<div class="card"><div class="n" id="n-recommended">{{ recommended_patients }}</div><div class="t">patients with a recommendation</div></div>
<div class="card"><div class="n" id="n-findings">{{ s.findings }}</div><div class="t">findings</div></div>
<div class="card"><div class="n" id="n-errors">{{ s.error_records }}</div><div class="t">records in errors.jsonl</div></div>
<div class="card"><div class="n {{ 'ok' if s.reconciled else 'bad' }}" id="reconciled">{{ 'reconciled' if s.reconciled else 'NOT reconciled' }}</div>
<div class="t">patients in = evaluated + rejected</div></div>
</div>
<section id="worklist-section">
<h2>Worklist: critical and warning alerts, open data gaps</h2>
<div class="tools"><input id="filter" placeholder="filter, e.g. T-DM1, platelets or an MRN" aria-label="filter worklist">
<a class="button" id="download-csv" download="worklist-{{ s.as_of[:10] }}.csv" href="{{ csv_href }}">Download worklist (CSV)</a>
<span class="meta" id="worklist-count">{{ worklist|length }} action(s) for {{ needs_action }} patient(s){% if worklist|length < actions_total %}, the {{ worklist|length }} most urgent shown (all {{ actions_total }} are in findings.{{ fmt }}){% endif %}; most urgent first (severity, then the oldest result). Click a column to sort.</span></div>
<table id="worklist"><thead><tr>
<th data-type="num">severity</th><th data-type="text">MRN</th><th data-type="text">action</th><th data-type="text">date</th>
<th data-type="text">on drug</th><th data-type="text">code</th><th data-type="text">review</th></tr></thead><tbody>
{% for r in worklist %}<tr data-patient="{{ r.patient }}"><td data-v="{{ r.rank }}" class="sev-{{ r.severity }}">{{ r.severity }}</td>
<td title="Patient/{{ r.patient }}">{{ r.identifier or 'no identifier: Patient/' ~ r.patient }}</td><td>{{ r.action }}</td><td>{{ r.date }}</td><td>{{ r.on_drug }}</td>
<td><code>{{ r.code }}</code></td><td>{{ 'review' if r.review_required else '' }}</td></tr>
{% endfor %}</tbody></table>
</section>
<section id="recommendations-section">
<h2>Recommendations ({{ recommendations|length }} for {{ recommended_patients }} patients): for the next clinic visit</h2>
<table id="recommendations"><thead><tr><th>MRN</th><th>recommendation</th><th>strength</th><th>code</th><th>review</th></tr></thead><tbody>
{% for r in recommendations %}<tr><td title="Patient/{{ r.patient }}">{{ r.identifier or 'no identifier: Patient/' ~ r.patient }}</td><td>{{ r.action }}</td><td>{{ r.strength }}</td><td><code>{{ r.code }}</code></td><td>{{ 'review' if r.review_required else '' }}</td></tr>
{% endfor %}</tbody></table>
</section>
<div class="grid">
<div><h2>Alerts by drug and severity (patients)</h2>{{ charts.drugs|safe }}</div>
<div><h2>Open data gaps by type (patients)</h2>{{ charts.gaps|safe }}</div>
<div><h2>Patients on therapy: days since the last LVEF ({{ on_therapy }})</h2>{{ charts.lvef_days|safe }}</div>
<div><h2>Patients on therapy: days since the last labs ({{ on_therapy }})</h2>{{ charts.lab_days|safe }}</div>
<div><h2>LVEF trajectory of patients with an LVEF alert or gap ({{ lvef_shown }} of {{ lvef_n }})</h2>{{ charts.lvef|safe }}</div>
<div><h2>Platelets (latest, 10&sup3;/&micro;L)</h2>{{ charts.platelets|safe }}</div>
<div><h2>Neutrophils (latest ANC, 10&#8313;/L)</h2>{{ charts.anc|safe }}</div>
<div><h2>AST/ALT (latest, max &times;ULN)</h2>{{ charts.transaminases|safe }}</div>
<div><h2>Total bilirubin (latest, &times;ULN)</h2>{{ charts.bilirubin|safe }}</div>
<div><h2>HER2 category</h2>{{ charts.her2|safe }}<h2>Setting and line of therapy</h2>{{ charts.lines|safe }}</div>
<div><h2>Data problems (errors.jsonl by kind)</h2>{{ charts.errors|safe }}</div>
</div>
<p class="meta">Synthetic or real, these are decision-support findings for review by the treating team and a pharmacist;
not medical advice. Outputs: findings.{{ fmt }}, patients.{{ fmt }}, errors.jsonl, summary.json.</p>
<script>
(function(){
  var table=document.getElementById('worklist'),body=table.tBodies[0];
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('sorted-asc'),num=th.getAttribute('data-type')==='num';
      Array.prototype.forEach.call(table.tHead.rows[0].cells,function(h){h.classList.remove('sorted-asc','sorted-desc');});
      th.classList.add(asc?'sorted-asc':'sorted-desc');
      var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[i],y=b.cells[i],c;
        if(num){var p=parseFloat(x.getAttribute('data-v')),q=parseFloat(y.getAttribute('data-v'));
          p=isNaN(p)?Infinity:p;q=isNaN(q)?Infinity:q;c=p===q?0:(p<q?-1:1);}
        else{c=x.textContent.localeCompare(y.textContent);}
        return asc?c:-c;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  document.getElementById('filter').addEventListener('input',function(e){
    var q=e.target.value.toLowerCase();
    Array.prototype.forEach.call(body.rows,function(r){r.style.display=r.textContent.toLowerCase().indexOf(q)>=0?'':'none';});
  });
})();
</script>
</body></html>
"""
)


def _worklist(findings: pa.Table, people: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Critical and warning alerts and data gaps, most urgent first: severity, then the oldest result
    (an action waiting longest comes first), undated ones last, then MRN and code."""
    rows = []
    for f in findings.select(
        [
            "patient",
            "code",
            "kind",
            "severity",
            "action_text",
            "summary",
            "basis_date",
            "drug",
            "review_required",
            "rule_id",
            "rule_version",
        ]
    ).to_pylist():
        if f["kind"] not in ("alert", "data-gap") or f["severity"] not in ("critical", "warning"):
            continue
        person = people.get(f["patient"], {})
        rows.append(
            {
                **f,
                "rank": SEVERITY_RANK[f["severity"]],
                "identifier": person.get("identifier") or "",
                "on_drug": person.get("on_drug") or "",
                "action": f["action_text"] or f["summary"],
                "date": (f["basis_date"] or "")[:10],
            }
        )
    rows.sort(
        key=lambda r: (r["rank"], r["date"] == "", r["date"], r["identifier"] or r["patient"], r["code"])
    )
    return rows


def _recommendations(findings: pa.Table, people: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    strength_rank = {"preferred": 0, "alternative": 1, "consider": 2}
    rows = []
    for f in findings.select(
        ["patient", "code", "kind", "strength", "action_text", "summary", "review_required"]
    ).to_pylist():
        if f["kind"] != "recommendation":
            continue
        person = people.get(f["patient"], {})
        rows.append(
            {
                **f,
                "identifier": person.get("identifier") or "",
                "action": f["action_text"] or f["summary"],
                "strength": f["strength"] or "",
            }
        )
    rows.sort(key=lambda r: (r["identifier"] or r["patient"], strength_rank.get(r["strength"], 3), r["code"]))
    return rows


def worklist_csv(rows: list[dict[str, Any]]) -> str:
    """The worklist as CSV text (the download built into the page)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(WORKLIST_CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            [
                r["severity"],
                r["identifier"],
                r["patient"],
                r["action"],
                r["date"],
                r["code"],
                r["kind"],
                r["drug"] or "",
                "yes" if r["review_required"] else "no",
                r["rule_id"],
                r["rule_version"],
            ]
        )
    return buffer.getvalue()


def _by_code(findings: pa.Table) -> list[dict[str, Any]]:
    if findings.num_rows == 0:
        return []
    stats: dict[str, dict[str, Any]] = {}
    for r in findings.select(["patient", "code", "kind", "severity", "review_required", "title"]).to_pylist():
        entry = stats.setdefault(
            r["code"],
            {
                "code": r["code"],
                "kind": r["kind"],
                "severity": r["severity"],
                "people": set(),
                "review": 0,
                "titles": set(),
            },
        )
        entry["people"].add(r["patient"])
        entry["review"] += bool(r["review_required"])
        if r["title"]:
            entry["titles"].add(r["title"])
    rows = [
        {
            "code": e["code"],
            "kind": e["kind"],
            "severity": e["severity"],
            "patients": len(e["people"]),
            "review": e["review"],
            # The rule's title is the same for every patient (a summary would be one patient's values).
            "title": " | ".join(sorted(e["titles"])),
        }
        for e in stats.values()
    ]
    rows.sort(key=lambda r: (SEVERITY_RANK[r["severity"]], -r["patients"], r["code"]))
    return rows


def _error_kinds(path: Path) -> Counter[str]:
    kinds: Counter[str] = Counter()
    if path.exists():
        with path.open("rb") as handle:
            for line in handle:
                kinds[orjson.loads(line)["kind"]] += 1
    return kinds


def _counts(table: pa.Table, column: str) -> Counter[str]:
    return Counter("(none)" if v is None else str(v) for v in table[column].to_pylist())


def _days_since(value: str | None, as_of: date) -> int | None:
    if not value:
        return None
    try:
        return (as_of - date.fromisoformat(value[:10])).days
    except ValueError:
        return None


def _drug_rows(worklist: list[dict[str, Any]]) -> list[tuple[str, dict[str, int]]]:
    """Patients per (drug, worst severity of that drug's alerts)."""
    worst: dict[tuple[str, str], str] = {}
    for r in worklist:
        if r["kind"] != "alert":
            continue
        key = (r["drug"] or "other", r["patient"])
        if key not in worst or SEVERITY_RANK[r["severity"]] < SEVERITY_RANK[worst[key]]:
            worst[key] = r["severity"]
    by_drug: dict[str, Counter[str]] = {}
    for (drug, _), severity in worst.items():
        by_drug.setdefault(drug, Counter())[severity] += 1
    return sorted(
        ((d, dict(c)) for d, c in by_drug.items()), key=lambda item: (-sum(item[1].values()), item[0])
    )


def _gap_bars(worklist: list[dict[str, Any]], by_code: list[dict[str, Any]]) -> list[Bar]:
    titles = {r["code"]: r["title"] for r in by_code}
    people: dict[str, set[str]] = {}
    severity: dict[str, str] = {}
    for r in worklist:
        if r["kind"] == "data-gap":
            people.setdefault(r["code"], set()).add(r["patient"])
            severity[r["code"]] = r["severity"]
    bars = [
        Bar(titles.get(code) or code, len(ids), COLORS[severity[code]], f"{code}: {titles.get(code) or ''}")
        for code, ids in people.items()
    ]
    return sorted(bars, key=lambda b: (-b.value, b.label))


def _lvef_series(
    worklist: list[dict[str, Any]], people: dict[str, dict[str, Any]]
) -> tuple[int, list[tuple[str, str, list[tuple[str, float]]]]]:
    flagged: dict[str, str] = {}
    for r in worklist:
        if "lvef" in r["code"] and r["patient"] not in flagged:
            flagged[r["patient"]] = r["severity"]
    with_series = [(pid, sev) for pid, sev in flagged.items() if people.get(pid, {}).get("lvef_series")]
    with_series.sort(key=lambda item: (SEVERITY_RANK[item[1]], people[item[0]].get("identifier") or item[0]))
    chosen = []
    for pid, sev in with_series[:LVEF_CHART_PATIENTS]:
        points = [(str(d), float(v)) for d, v in orjson.loads(people[pid]["lvef_series"])]
        chosen.append((people[pid].get("identifier") or pid, sev, points))
    return len(with_series), chosen


def render(out: Path, thresholds: dict[str, Any] | None = None) -> str:
    """The report page for the outputs in ``out`` (``thresholds``: rule parameters drawn on charts)."""
    thresholds = thresholds or {}
    summary = orjson.loads((out / "summary.json").read_bytes())
    as_of = date.fromisoformat(summary["as_of"][:10])
    fmt = "parquet" if (out / "findings.parquet").exists() else "csv"
    findings = read_table(out, "findings")
    patients = read_table(out, "patients")
    people = {
        r["patient"]: r
        for r in patients.select(
            ["patient", "identifier", "on_drug", "lvef_series", "lvef_date", "labs_date"]
        ).to_pylist()
    }
    by_code = _by_code(findings)
    worklist = _worklist(findings, people)
    needs_action = len({r["patient"] for r in worklist})
    recommendations = _recommendations(findings, people)
    her2 = _counts(patients, "her2_category")
    her2_order = ["positive", "equivocal", "low", "ultralow", "zero", "negative", "unknown"]
    line_counts: Counter[str] = Counter()
    for r in patients.select(["setting", "line"]).to_pylist():
        if r["setting"] == "metastatic":
            line = r["line"] or 0
            line_counts[f"metastatic: {'3+' if line >= 3 else line} prior line(s)"] += 1
        else:
            line_counts[str(r["setting"])] += 1
    labs = patients.select(["platelets", "anc", "ast_x_uln", "alt_x_uln", "bilirubin_x_uln"]).to_pylist()
    transaminase = [
        max((v for v in (r["ast_x_uln"], r["alt_x_uln"]) if v is not None), default=None) for r in labs
    ]
    on_therapy = [r for r in people.values() if r["on_drug"]]
    lvef_n, lvef_series = _lvef_series(worklist, people)
    lvef_lines = []
    if thresholds.get("lvef_hold_below") is not None:
        lvef_lines.append(
            (
                float(thresholds["lvef_hold_below"]),
                f"hold below {thresholds['lvef_hold_below']}%",
                COLORS["critical"],
            )
        )
    if thresholds.get("lvef_lower_limit_normal") is not None:
        lvef_lines.append(
            (
                float(thresholds["lvef_lower_limit_normal"]),
                f"lower limit of normal {thresholds['lvef_lower_limit_normal']}%",
                COLORS["warning"],
            )
        )
    errors = _error_kinds(out / "errors.jsonl")
    charts = {
        "drugs": stacked_chart(_drug_rows(worklist), "chart-alerts-by-drug", "alerts by drug and severity"),
        "gaps": bar_chart(
            _gap_bars(worklist, by_code), "chart-gaps", "data gaps by type", label_w=360, clip=50
        ),
        "lvef_days": days_chart(
            [_days_since(r["lvef_date"], as_of) for r in on_therapy],
            thresholds.get("lvef_interval_days"),
            "chart-lvef-days",
            "days since the last LVEF",
            "LVEF",
        ),
        "lab_days": days_chart(
            [_days_since(r["labs_date"], as_of) for r in on_therapy],
            thresholds.get("lab_recency_days"),
            "chart-lab-days",
            "days since the last labs",
            "labs",
        ),
        "lvef": lvef_trajectory_chart(lvef_series, lvef_lines, "chart-lvef"),
        "her2": bar_chart(
            [Bar(c, her2[c]) for c in her2_order if her2.get(c)], "chart-her2", "HER2 category"
        ),
        "lines": bar_chart(
            [Bar(k, v) for k, v in sorted(line_counts.items())], "chart-lines", "line of therapy"
        ),
        "platelets": bar_chart(
            _bins((r["platelets"] for r in labs), PLATELET_BINS), "chart-platelets", "platelets"
        ),
        "anc": bar_chart(_bins((r["anc"] for r in labs), ANC_BINS), "chart-anc", "ANC"),
        "transaminases": bar_chart(_bins(transaminase, TRANSAMINASE_BINS), "chart-ast-alt", "AST/ALT"),
        "bilirubin": bar_chart(
            _bins((r["bilirubin_x_uln"] for r in labs), BILIRUBIN_BINS), "chart-bilirubin", "bilirubin"
        ),
        "errors": bar_chart([Bar(k, v) for k, v in sorted(errors.items())], "chart-errors", "errors by kind"),
    }
    shown = worklist[:WORKLIST_LIMIT]
    return TEMPLATE.render(
        s=summary,
        by_code=by_code,
        charts=charts,
        worklist=shown,
        actions_total=len(worklist),
        needs_action=needs_action,
        recommendations=recommendations[:WORKLIST_LIMIT],
        recommended_patients=len({r["patient"] for r in recommendations}),
        csv_href="data:text/csv;charset=utf-8," + quote(worklist_csv(shown), safe=""),
        fmt=fmt,
        on_therapy=len(on_therapy),
        lvef_n=lvef_n,
        lvef_shown=len(lvef_series),
    )


def report_thresholds(rules_dir: Path, statuses: Iterable[str]) -> dict[str, Any]:
    """The rule parameters the charts draw (from the rules the cohort was evaluated with)."""
    from cds.engine.library import load_library

    params = load_library(rules_dir, statuses=set(statuses)).parameters
    return {name: params.get(name) for name in REPORT_PARAMETERS}


def write_report(out: Path, thresholds: dict[str, Any] | None = None) -> Path:
    """Render and write ``out/report.html``."""
    target = out / "report.html"
    target.write_text(render(out, thresholds), encoding="utf-8")
    return target
