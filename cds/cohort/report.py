# ruff: noqa: E501  (the inline HTML/CSS template keeps its natural line lengths)
"""report.html: one self-contained page (inline CSS, SVG and a little JS; nothing fetched).

A quality team opens it from a shared drive or an e-mail, often without internet, so charts are
drawn server-side as SVG, the worklist is a plain table sorted and filtered by a few lines of inline
JavaScript, and its CSV download is a ``data:`` link built into the page. The worklist comes first:
what must be acted on (critical and warning alerts, open data gaps), one row per action, in clinical
words with the value and its date, most severe first and, within a severity, the oldest result
first (it has waited longest). Recommendations follow in their own section. The charts draw the
thresholds of the rules the cohort was evaluated with (rule parameters named in the wording data).
Every number on the page comes from summary.json and the output tables, so the page reconciles with
the files next to it.
"""

from __future__ import annotations

import base64
import csv
import io
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from html import escape
from pathlib import Path
from typing import Any

import jinja2
import orjson
import pyarrow as pa  # type: ignore[import-untyped]

from cds.cohort.outputs import read_table
from cds.findings.wording import Threshold, Wording, clinical_date, drug_names_of, load_wording

WORKLIST_LIMIT = 5000
LVEF_CHART_PATIENTS = 8
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
STRENGTH_RANK = {"preferred": 0, "alternative": 1, "consider": 2}
COLORS = {"critical": "#c62828", "warning": "#ef8f00", "info": "#1976d2", "bar": "#455a64"}
PALETTE = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#1f78b4", "#666666")
NO_DRUG = "not drug-specific"
CSV_COLUMNS = (
    "severity",
    "identifier",
    "patient",
    "action",
    "date",
    "drug",
    "code",
    "kind",
    "review_required",
    "rule_id",
    "rule_version",
)


@dataclass(frozen=True)
class Thresholds:
    """The rule parameters the charts draw, with their labels (from the wording data)."""

    lvef_lines: tuple[tuple[float, str], ...] = ()
    lvef_due: tuple[int, str] | None = None
    labs_due: tuple[int, str] | None = None


def thresholds_of(wording: Wording, parameters: dict[str, Any]) -> Thresholds:
    """Resolve the wording's chart thresholds against the rule parameters (missing ones are skipped)."""

    def resolved(t: Threshold | None) -> tuple[int, str] | None:
        value = parameters.get(t.parameter) if t is not None else None
        return (int(value), t.text(value)) if t is not None and isinstance(value, int | float) else None

    lines = tuple(
        (float(parameters[t.parameter]), t.text(parameters[t.parameter]))
        for t in wording.worklist.lvef_lines
        if isinstance(parameters.get(t.parameter), int | float)
    )
    return Thresholds(lines, resolved(wording.worklist.lvef_due), resolved(wording.worklist.labs_due))


@dataclass
class Bar:
    """One bar of a chart."""

    label: str
    value: int
    color: str = COLORS["bar"]
    tooltip: str = ""


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "\u2026"


def _svg_open(chart_id: str, title: str, width: int, height: int) -> str:
    return (
        f'<svg id="{chart_id}" class="chart" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
    )


def bar_chart(bars: list[Bar], chart_id: str, title: str, label_w: int = 260, clip: int = 40) -> str:
    """A horizontal bar chart as inline SVG (labels and counts are real text, visible to tests)."""
    width, row_h = 640, 22
    top = max((b.value for b in bars), default=0) or 1
    height = row_h * max(len(bars), 1) + 10
    parts = [_svg_open(chart_id, title, width, height)]
    for i, b in enumerate(bars):
        y = 5 + i * row_h
        length = (width - label_w - 70) * b.value / top
        parts.append(
            f'<g class="bar" data-label="{escape(b.label)}" data-count="{b.value}"><title>{escape(b.tooltip or b.label)}: {b.value}</title>'
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" class="lbl">{escape(_clip(b.label, clip))}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{length:.1f}" height="{row_h - 6}" fill="{b.color}"/>'
            f'<text x="{label_w + length + 5:.1f}" y="{y + 15}" class="val">{b.value}</text></g>'
        )
    if not bars:
        parts.append('<text x="10" y="20" class="lbl">none</text>')
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
    """Patients per drug, split by the worst severity of that drug's alerts (with a legend)."""
    width, label_w, row_h, legend_h = 640, 200, 24, 24
    top = max((sum(c.values()) for _, c in rows), default=0) or 1
    height = legend_h + row_h * max(len(rows), 1) + 10
    parts = [
        _svg_open(chart_id, title, width, height),
        _legend([("critical", COLORS["critical"])], label_w, 14),
        _legend([("warning", COLORS["warning"])], label_w + 90, 14),
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
                f'data-drug="{escape(label)}" data-severity="{severity}" data-count="{n}">'
                f"<title>{escape(label)}, {severity}: {n} patient(s)</title></rect>"
            )
            x += length
        parts.append(f'<text x="{x + 5:.1f}" y="{y + 16}" class="val">{sum(counts.values())}</text>')
    if not rows:
        parts.append(f'<text x="10" y="{legend_h + 16}" class="lbl">no critical or warning alerts</text>')
    parts.append("</svg>")
    return "".join(parts)


def days_chart(days: list[int | None], due: tuple[int, str] | None, chart_id: str, what: str) -> str:
    """Histogram of days since the last result, the due threshold drawn as a dashed line; bars past
    it (and patients with no result at all) are red: they are overdue."""
    threshold = due[0] if due is not None else None
    base = [0, 1, 3, 7, 14, 30, 60, 180, 365]
    # A result exactly ``threshold`` days old is still in time: the first overdue bin starts after it.
    edges = sorted(set(base + ([threshold + 1] if threshold is not None else [])))
    bins: list[tuple[str, int, int]] = []
    for lo, hi in zip(edges, [*edges[1:], 10**9], strict=True):
        label = f"{lo}-{hi - 1}" if hi - 1 > lo else f"{lo}"
        bins.append((label if hi < 10**9 else f"{lo}+", lo, hi))
    counts = [0] * len(bins)
    none = 0
    for d in days:
        if d is None:
            none += 1
            continue
        for i, (_, lo, hi) in enumerate(bins):
            if lo <= max(d, 0) < hi:
                counts[i] += 1
                break
    width, height, left, bottom, top_y = 640, 240, 40, 190, 44
    slot = (width - left - 10) / (len(bins) + 1)
    top = max([*counts, none]) or 1
    overdue = none + sum(
        c for c, (_, lo, _) in zip(counts, bins, strict=True) if threshold is not None and lo > threshold
    )
    parts = [
        _svg_open(chart_id, f"days since the last {what}", width, height),
        f'<line x1="{left}" x2="{width - 10}" y1="{bottom}" y2="{bottom}" stroke="#999"/>',
    ]
    columns = [*zip(bins, counts, strict=True), (("none on file", -1, 0), none)]
    for i, ((label, lo, _), n) in enumerate(columns):
        x = left + i * slot
        h = (bottom - top_y) * n / top
        late = label == "none on file" or (threshold is not None and lo > threshold)
        color = COLORS["critical"] if late else COLORS["bar"]
        parts.append(
            f'<g class="bin" data-label="{escape(label)}" data-count="{n}">'
            f'<rect x="{x + 3:.1f}" y="{bottom - h:.1f}" width="{slot - 6:.1f}" height="{h:.1f}" fill="{color}">'
            f"<title>{escape(label)} days: {n} patient(s)</title></rect>"
            f'<text x="{x + slot / 2:.1f}" y="{bottom - h - 4:.1f}" text-anchor="middle" class="val">{n}</text>'
            f'<text x="{x + slot / 2:.1f}" y="{bottom + 14}" text-anchor="middle" class="tick">{escape(label)}</text></g>'
        )
    parts.append(
        f'<text x="{left}" y="{bottom + 32}" class="lbl">days since the last {escape(what)} (as of the run)</text>'
    )
    if due is not None and threshold is not None:
        index = next(i for i, (_, lo, _) in enumerate(bins) if lo > threshold)
        x = left + index * slot
        anchor = "start" if x < width / 2 else "end"
        parts.append(
            f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="{top_y - 30}" y2="{bottom}" stroke="{COLORS["critical"]}" stroke-dasharray="5,3"/>'
            f'<text x="{x + 4 if anchor == "start" else x - 4:.1f}" y="{top_y - 20}" text-anchor="{anchor}" '
            f'class="lbl threshold-label" data-overdue="{overdue}">{escape(due[1])}: {overdue} overdue or none on file</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def lvef_trajectory_chart(
    series: list[tuple[str, str, list[tuple[str, float]]]],
    thresholds: Sequence[tuple[float, str]],
    chart_id: str,
) -> str:
    """LVEF over time: one coloured, labelled line per patient, a legend, and the thresholds.

    ``series``: (label, worst severity, [(ISO date, LVEF %)]); ``thresholds``: (value, label)."""
    width, height, left, right, top, bottom = 640, 330, 50, 390, 20, 290
    days = [date.fromisoformat(d) for _, _, pts in series for d, _ in pts]
    first, last = (min(days), max(days)) if days else (date(2000, 1, 1), date(2000, 1, 2))
    span = max((last - first).days, 1)
    low = min([20.0, *(v for _, _, pts in series for _, v in pts), *(v for v, _ in thresholds)])
    high = max([80.0, *(v for _, _, pts in series for _, v in pts)])

    def x(d: str) -> float:
        return left + (date.fromisoformat(d) - first).days / span * (right - left)

    def y(v: float) -> float:
        return bottom - (v - low) / (high - low) * (bottom - top)

    parts = [_svg_open(chart_id, "LVEF trajectory", width, height)]
    for level in range(int(low // 10 * 10), int(high) + 1, 10):
        if level < low:
            continue
        parts.append(
            f'<line x1="{left}" x2="{right}" y1="{y(level):.1f}" y2="{y(level):.1f}" stroke="#eee"/>'
            f'<text x="{left - 6}" y="{y(level) + 4:.1f}" text-anchor="end" class="tick">{level}%</text>'
        )
    threshold_colors = (COLORS["critical"], COLORS["warning"], COLORS["info"])
    for i, (value, label) in enumerate(thresholds):
        color = threshold_colors[min(i, len(threshold_colors) - 1)]
        parts.append(
            f'<line class="threshold" data-value="{value:g}" x1="{left}" x2="{right}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'stroke="{color}" stroke-dasharray="6,3"/>'
            f'<text x="{left + 4}" y="{y(value) + 14:.1f}" class="lbl threshold-label" fill="{color}">{escape(label)}</text>'
        )
    if days:
        parts.append(
            f'<text x="{left}" y="{height - 8}" class="tick">{escape(clinical_date(first.isoformat()))}</text>'
            f'<text x="{right}" y="{height - 8}" text-anchor="end" class="tick">{escape(clinical_date(last.isoformat()))}</text>'
        )
    legend: list[tuple[str, str]] = []
    for i, (label, severity, pts) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in pts)
        dash = "" if severity == "critical" else ' stroke-dasharray="2,2"'
        readings = ", ".join(f"{clinical_date(d)} {v:g}%" for d, v in pts)
        parts.append(
            f'<g class="patient-line" data-patient="{escape(label)}"><title>{escape(label)}: {escape(readings)}</title>'
            f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"{dash}/>'
            + "".join(f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="3" fill="{color}"/>' for d, v in pts)
            + "</g>"
        )
        legend.append((f"{_clip(label, 26)}: {pts[-1][1]:g}%", color))
    parts.append(_legend(legend, right + 15, top + 10))
    if series:
        ly = top + 10 + 16 * len(series) + 8
        parts.append(
            f'<g class="legend"><line x1="{right + 15}" x2="{right + 35}" y1="{ly}" y2="{ly}" stroke="#333" stroke-width="2"/>'
            f'<text x="{right + 40}" y="{ly + 4}" class="tick">critical</text>'
            f'<line x1="{right + 95}" x2="{right + 115}" y1="{ly}" y2="{ly}" stroke="#333" stroke-width="2" stroke-dasharray="2,2"/>'
            f'<text x="{right + 120}" y="{ly + 4}" class="tick">warning</text></g>'
        )
    else:
        parts.append(
            f'<text x="{left + 20}" y="{top + 30}" class="lbl">no patient with an LVEF alert or gap</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


TEMPLATE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>HER2 cohort review - {{ s.as_of[:10] }}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:10px 20px;color:#222;max-width:1400px}
h1{font-size:19px;margin:0 10px 0 0;display:inline}h2{font-size:16px;margin:18px 0 6px;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:12px}.cards{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0}
.card{border:1px solid #ddd;border-radius:5px;padding:2px 9px}
.card .n{font-size:17px;font-weight:600}.card .t{font-size:11px;color:#555}
.ok{color:#2e7d32}.bad{color:#c62828}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(640px,1fr));gap:8px}
.chart .lbl{font-size:11px;fill:#333}.chart .val{font-size:12px;fill:#111}.chart .tick{font-size:10.5px;fill:#555}
table{border-collapse:collapse;font-size:12.5px;width:100%}th,td{border-bottom:1px solid #eee;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f5f5f5;cursor:pointer;position:sticky;top:0;user-select:none}th.sorted-asc::after{content:" \\25B2"}
th.sorted-desc::after{content:" \\25BC"}td.num{text-align:right;font-variant-numeric:tabular-nums}
.sev-critical{color:#c62828;font-weight:600}.sev-warning{color:#b26a00;font-weight:600}.sev-info{color:#1976d2}
td.pid,td.code{color:#666;font-size:11.5px}td.day{white-space:nowrap}.noid{color:#b26a00;font-style:italic}
code{font-size:12px}.tools{display:flex;gap:10px;align-items:center;margin:4px 0}
#filter{padding:4px;width:320px}.button{background:#1976d2;color:#fff;border-radius:4px;padding:4px 10px;text-decoration:none;font-size:13px}
.scroll{max-height:560px;overflow:auto;border:1px solid #eee}
</style></head><body>
<header><h1>HER2 cohort review</h1><span class="meta">as of {{ s.as_of }} &middot; input {{ s.input }} ({{ s.input_kind }}) &middot;
rules digest <code>{{ s.rules_digest[:12] }}</code> &middot; {{ s.executor }}</span></header>
<div class="cards">
<div class="card"><div class="n" id="n-needs-action">{{ needs_action }}</div><div class="t">patients needing action</div></div>
<div class="card"><div class="n" id="n-actions">{{ actions_total }}</div><div class="t">actions (critical/warning alerts, data gaps)</div></div>
<div class="card"><div class="n" id="n-recommended">{{ recommended_patients }}</div><div class="t">patients with recommendations</div></div>
<div class="card"><div class="n" id="n-patients-in">{{ s.patients_in }}</div><div class="t">patients in</div></div>
<div class="card"><div class="n" id="n-evaluated">{{ s.evaluated }}</div><div class="t">evaluated</div></div>
<div class="card"><div class="n" id="n-rejected">{{ s.rejected }}</div><div class="t">rejected</div></div>
<div class="card"><div class="n" id="n-findings">{{ s.findings }}</div><div class="t">findings</div></div>
<div class="card"><div class="n" id="n-errors">{{ s.error_records }}</div><div class="t">records in errors.jsonl</div></div>
<div class="card"><div class="n {{ 'ok' if s.reconciled else 'bad' }}" id="reconciled">{{ 'reconciled' if s.reconciled else 'NOT reconciled' }}</div>
<div class="t">patients in = evaluated + rejected</div></div>
</div>
<h2 id="worklist-title">Worklist: act on these</h2>
<div class="tools"><a class="button" id="download-csv" download="worklist-{{ s.as_of[:10] }}.csv" href="{{ csv_href }}">Download CSV</a>
<input id="filter" placeholder="filter: identifier, drug, action, code" aria-label="filter worklist">
<span class="meta" id="worklist-count">{{ worklist|length }} of {{ actions_total }} actions for {{ needs_action }} patients
{%- if worklist|length < actions_total %} (most severe first; all are in findings.{{ fmt }}){% endif %}: critical and warning
alerts, then open data gaps; within a severity the oldest result first. Click a column to sort.</span></div>
<div class="scroll"><table id="worklist"><thead><tr>
<th data-type="num">severity</th><th data-type="text">identifier (MRN)</th><th data-type="text">action</th><th data-type="text">date</th>
<th data-type="text">drug</th><th data-type="text">review</th><th data-type="text">finding</th><th data-type="text">patient</th></tr></thead><tbody>
{% for r in worklist %}<tr data-code="{{ r.code }}"><td data-v="{{ r.rank }}" class="sev-{{ r.severity }}">{{ r.severity }}</td>
<td>{% if r.identifier %}{{ r.identifier }}{% else %}<span class="noid">no identifier</span>{% endif %}</td>
<td>{{ r.action }}</td><td class="day" data-v="{{ r.date }}">{{ r.date_text }}</td><td>{{ r.drug or "" }}</td><td>{{ "review" if r.review_required else "" }}</td>
<td class="code"><code>{{ r.code }}</code></td><td class="pid">{{ r.patient }}</td></tr>
{% endfor %}</tbody></table></div>
<h2 id="recommendations-title">Recommendations ({{ recommended_patients }} patients): treatment options for the next visit</h2>
<div class="scroll"><table id="recommendations"><thead><tr><th>identifier (MRN)</th><th>recommendation</th><th>strength</th><th>review</th><th>finding</th><th>patient</th></tr></thead><tbody>
{% for r in recommendations %}<tr><td>{% if r.identifier %}{{ r.identifier }}{% else %}<span class="noid">no identifier</span>{% endif %}</td><td>{{ r.action }}</td><td>{{ r.strength or "" }}</td>
<td>{{ "review" if r.review_required else "" }}</td><td class="code"><code>{{ r.code }}</code></td><td class="pid">{{ r.patient }}</td></tr>
{% endfor %}</tbody></table></div>
<div class="grid">
<div><h2>Alerts by drug and severity (patients)</h2>{{ charts.drugs|safe }}</div>
<div><h2>Open data gaps by type (patients)</h2>{{ charts.gaps|safe }}</div>
<div><h2>On HER2-directed therapy ({{ on_therapy }}): days since the last LVEF</h2>{{ charts.lvef_days|safe }}</div>
<div><h2>On HER2-directed therapy ({{ on_therapy }}): days since the last labs</h2>{{ charts.lab_days|safe }}</div>
<div><h2>LVEF trajectory: patients with an LVEF alert or gap ({{ lvef_shown }} of {{ lvef_n }})</h2>{{ charts.lvef|safe }}</div>
<div><h2>HER2 category</h2>{{ charts.her2|safe }}<h2>Setting and line of therapy</h2>{{ charts.lines|safe }}</div>
<div><h2>Data problems (errors.jsonl by kind)</h2>{{ charts.errors|safe }}</div>
</div>
<h2>Findings by code</h2>
<table id="findings-by-code"><thead><tr><th>code</th><th>kind</th><th>severity</th><th>patients</th><th>review required</th><th>rule</th></tr></thead><tbody>
{% for r in by_code %}<tr><td><code>{{ r.code }}</code></td><td>{{ r.kind }}</td><td class="sev-{{ r.severity }}">{{ r.severity }}</td>
<td class="num" data-code="{{ r.code }}">{{ r.patients }}</td><td class="num">{{ r.review }}</td><td>{{ r.title }}</td></tr>{% endfor %}
</tbody></table>
<p class="meta">Decision-support findings for review by the treating team and a pharmacist; not medical advice.
Outputs: findings.{{ fmt }}, patients.{{ fmt }}, errors.jsonl, summary.json.</p>
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
        else{var s=x.getAttribute('data-v'),t=y.getAttribute('data-v');
          c=(s!==null&&t!==null)?s.localeCompare(t):x.textContent.localeCompare(y.textContent);}
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


def _people(patients: pa.Table) -> dict[str, dict[str, Any]]:
    columns = ["patient", "identifier", "on_her2_directed", "lvef_series", "lvef_date", "labs_date"]
    return {r["patient"]: r for r in patients.select(columns).to_pylist()}


def _worklist(findings: pa.Table, people: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Critical and warning alerts and open data gaps, one row per action: severity, then the
    oldest result first (undated ones last), then identifier and code."""
    columns = [
        "patient",
        "code",
        "kind",
        "severity",
        "action_text",
        "summary",
        "value_date",
        "drug",
        "review_required",
        "rule_id",
        "rule_version",
        "key_facts",
    ]
    rows = []
    for f in findings.select(columns).to_pylist():
        if f["kind"] not in ("alert", "data-gap") or f["severity"] not in ("critical", "warning"):
            continue
        day = (f["value_date"] or "")[:10]
        rows.append(
            {
                **f,
                "rank": SEVERITY_RANK[f["severity"]],
                "identifier": people.get(f["patient"], {}).get("identifier") or "",
                "action": f["action_text"] or f["summary"],
                "date": day,
                "date_text": clinical_date(day) if day else "",
            }
        )
    rows.sort(
        key=lambda r: (r["rank"], r["date"] == "", r["date"], r["identifier"] or r["patient"], r["code"])
    )
    return rows


def _recommendations(findings: pa.Table, people: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    columns = ["patient", "code", "kind", "strength", "action_text", "summary", "review_required"]
    rows = [
        {
            **f,
            "identifier": people.get(f["patient"], {}).get("identifier") or "",
            "action": f["action_text"] or f["summary"],
        }
        for f in findings.select(columns).to_pylist()
        if f["kind"] == "recommendation"
    ]
    rows.sort(
        key=lambda r: (r["identifier"] or r["patient"], STRENGTH_RANK.get(r["strength"] or "", 3), r["code"])
    )
    return rows


def _cell(value: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (patient data may start with "=")."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def worklist_csv(rows: list[dict[str, Any]]) -> str:
    """The worklist as CSV text (the download built into the page)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        values = [
            r["severity"],
            r["identifier"],
            r["patient"],
            r["action"],
            r["date"],
            r["drug"] or "",
            r["code"],
            r["kind"],
            "yes" if r["review_required"] else "no",
            r["rule_id"],
            r["rule_version"],
        ]
        writer.writerow([_cell(str(v)) for v in values])
    return buffer.getvalue()


def _by_code(findings: pa.Table) -> list[dict[str, Any]]:
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
            # the rule's title is the same for every patient (a summary would be one patient's values)
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


def _days_since(value: str | None, as_of: date) -> int | None:
    if not value:
        return None
    try:
        return (as_of - date.fromisoformat(value[:10])).days
    except ValueError:
        return None


def _drug_rows(worklist: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, int]]]:
    """Patients per drug, counted once per drug at the worst severity of that drug's alerts."""
    worst: dict[tuple[str, str], str] = {}
    for r in worklist:
        if r["kind"] != "alert":
            continue
        key = (r["drug"] or NO_DRUG, r["patient"])
        if key not in worst or SEVERITY_RANK[r["severity"]] < SEVERITY_RANK[worst[key]]:
            worst[key] = r["severity"]
    by_drug: dict[str, Counter[str]] = {}
    for (drug, _), severity in worst.items():
        by_drug.setdefault(drug, Counter())[severity] += 1
    return sorted(
        ((d, dict(c)) for d, c in by_drug.items()), key=lambda item: (-sum(item[1].values()), item[0])
    )


def _gap_bars(worklist: Iterable[dict[str, Any]], titles: dict[str, str]) -> list[Bar]:
    people: dict[str, set[str]] = {}
    for r in worklist:
        if r["kind"] == "data-gap":
            people.setdefault(r["code"], set()).add(r["patient"])
    bars = [
        Bar(titles.get(code) or code, len(ids), COLORS["warning"], f"{code}: {titles.get(code) or ''}")
        for code, ids in people.items()
    ]
    return sorted(bars, key=lambda b: (-b.value, b.label))


def _lvef_series(
    worklist: list[dict[str, Any]], people: dict[str, dict[str, Any]]
) -> tuple[int, list[tuple[str, str, list[tuple[str, float]]]]]:
    """Patients whose worklist actions rest on an LVEF fact, most severe first (at most 8 drawn)."""
    flagged: dict[str, str] = {}
    for r in worklist:
        facts = [part.split("=", 1)[0] for part in (r["key_facts"] or "").split("; ")]
        if any(fact.startswith("lvef.") for fact in facts) and r["patient"] not in flagged:
            flagged[r["patient"]] = r["severity"]
    drawable = [(pid, sev) for pid, sev in flagged.items() if people.get(pid, {}).get("lvef_series")]
    drawable.sort(key=lambda item: (SEVERITY_RANK[item[1]], people[item[0]].get("identifier") or item[0]))
    chosen = []
    for pid, sev in drawable[:LVEF_CHART_PATIENTS]:
        points = [(str(d), float(v)) for d, v in orjson.loads(people[pid]["lvef_series"])]
        chosen.append((people[pid].get("identifier") or pid, sev, points))
    return len(flagged), chosen


def render(out: Path, thresholds: Thresholds | None = None) -> str:
    """The report page for the outputs in ``out`` (``thresholds``: rule parameters the charts draw)."""
    thresholds = thresholds or Thresholds()
    summary = orjson.loads((out / "summary.json").read_bytes())
    as_of = date.fromisoformat(summary["as_of"][:10])
    fmt = "parquet" if (out / "findings.parquet").exists() else "csv"
    findings = read_table(out, "findings")
    patients = read_table(out, "patients")
    people = _people(patients)
    by_code = _by_code(findings)
    worklist = _worklist(findings, people)
    recommendations = _recommendations(findings, people)
    her2 = Counter("(none)" if v is None else str(v) for v in patients["her2_category"].to_pylist())
    her2_order = ["positive", "equivocal", "low", "ultralow", "zero", "negative", "unknown"]
    line_counts: Counter[str] = Counter()
    for r in patients.select(["setting", "line"]).to_pylist():
        if r["setting"] == "metastatic":
            line = r["line"] or 0
            line_counts[f"metastatic: {'3+' if line >= 3 else line} prior line(s)"] += 1
        else:
            line_counts[str(r["setting"])] += 1
    on_therapy = [r for r in people.values() if r["on_her2_directed"]]
    lvef_n, lvef_series = _lvef_series(worklist, people)
    errors = _error_kinds(out / "errors.jsonl")
    titles = {r["code"]: r["title"] for r in by_code}
    charts = {
        "drugs": stacked_chart(_drug_rows(worklist), "chart-alerts-by-drug", "alerts by drug and severity"),
        "gaps": bar_chart(
            _gap_bars(worklist, titles), "chart-gaps", "data gaps by type", label_w=440, clip=70
        ),
        "lvef_days": days_chart(
            [_days_since(r["lvef_date"], as_of) for r in on_therapy],
            thresholds.lvef_due,
            "chart-lvef-days",
            "LVEF",
        ),
        "lab_days": days_chart(
            [_days_since(r["labs_date"], as_of) for r in on_therapy],
            thresholds.labs_due,
            "chart-lab-days",
            "labs",
        ),
        "lvef": lvef_trajectory_chart(lvef_series, thresholds.lvef_lines, "chart-lvef"),
        "her2": bar_chart(
            [Bar(c, her2[c]) for c in her2_order if her2.get(c)], "chart-her2", "HER2 category"
        ),
        "lines": bar_chart(
            [Bar(k, v) for k, v in sorted(line_counts.items())], "chart-lines", "line of therapy"
        ),
        "errors": bar_chart([Bar(k, v) for k, v in sorted(errors.items())], "chart-errors", "errors by kind"),
    }
    shown = worklist[:WORKLIST_LIMIT]
    csv_bytes = worklist_csv(shown).encode("utf-8")
    return TEMPLATE.render(
        s=summary,
        by_code=by_code,
        charts=charts,
        worklist=shown,
        actions_total=len(worklist),
        needs_action=len({r["patient"] for r in worklist}),
        recommendations=recommendations[:WORKLIST_LIMIT],
        recommended_patients=len({r["patient"] for r in recommendations}),
        csv_href="data:text/csv;charset=utf-8;base64," + base64.b64encode(csv_bytes).decode("ascii"),
        fmt=fmt,
        on_therapy=len(on_therapy),
        lvef_n=lvef_n,
        lvef_shown=len(lvef_series),
    )


def report_thresholds(rules_dir: Path, statuses: Iterable[str]) -> Thresholds:
    """The thresholds the charts draw, from the rules the cohort was evaluated with."""
    from cds.engine.library import load_library

    library = load_library(rules_dir, statuses=set(statuses))
    wording = load_wording(rules_dir, drug_names_of(library.catalogue))
    return thresholds_of(wording, library.parameters)


def write_report(out: Path, thresholds: Thresholds | None = None) -> Path:
    """Render and write ``out/report.html``."""
    target = out / "report.html"
    target.write_text(render(out, thresholds), encoding="utf-8")
    return target
