# ruff: noqa: E501  (the inline HTML/CSS template keeps its natural line lengths)
"""report.html: one self-contained page (inline CSS, SVG and a little JS; nothing fetched).

A quality team opens it from a shared drive or an e-mail, often without internet, so charts are
drawn server-side as SVG and the worklist is a plain table sorted and filtered by 30 lines of
inline JavaScript. Every number on the page comes from summary.json and the output tables, so
the page reconciles with the files next to it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import jinja2
import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from cds.cohort.outputs import read_table

WORKLIST_LIMIT = 5000
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
COLORS = {"critical": "#c62828", "warning": "#ef8f00", "info": "#1976d2", "bar": "#455a64"}

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


def bar_chart(bars: list[Bar], chart_id: str, title: str) -> str:
    """A horizontal bar chart as inline SVG (labels and counts are real text, visible to tests)."""
    width, label_w, row_h = 640, 260, 22
    top = max((b.value for b in bars), default=0) or 1
    height = row_h * max(len(bars), 1) + 10
    parts = [
        f'<svg id="{chart_id}" class="chart" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
    ]
    for i, b in enumerate(bars):
        y = 5 + i * row_h
        length = (width - label_w - 70) * b.value / top
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" class="lbl">{escape(b.label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{length:.1f}" height="{row_h - 6}" fill="{b.color}"/>'
            f'<text x="{label_w + length + 5:.1f}" y="{y + 15}" class="val">{b.value}</text>'
        )
    if not bars:
        parts.append('<text x="10" y="20" class="lbl">no data</text>')
    parts.append("</svg>")
    return "".join(parts)


def lvef_chart(rows: list[dict[str, Any]], chart_id: str) -> str:
    """Slope chart: baseline -> latest LVEF (%) for each flagged patient, 40 % and 50 % lines marked."""
    width, height, left, right, top, bottom = 640, 300, 60, 520, 20, 270

    def y(v: float) -> float:
        return bottom - (min(max(v, 20.0), 80.0) - 20.0) / 60.0 * (bottom - top)

    parts = [
        f'<svg id="{chart_id}" class="chart" role="img" aria-label="LVEF trend" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">'
    ]
    for level in (40, 50, 60, 70):
        parts.append(
            f'<line x1="{left}" x2="{right}" y1="{y(level):.1f}" y2="{y(level):.1f}" stroke="#ccc"/>'
            f'<text x="{left - 8}" y="{y(level) + 4:.1f}" text-anchor="end" class="lbl">{level}%</text>'
        )
    parts.append(
        f'<text x="{left}" y="{height - 8}" class="lbl">baseline</text>'
        f'<text x="{right}" y="{height - 8}" text-anchor="end" class="lbl">latest</text>'
    )
    for r in rows:
        base, last = r["lvef_baseline"], r["lvef"]
        color = COLORS["critical"] if (base - last) >= 10 or last < 40 else COLORS["warning"]
        parts.append(
            f'<line x1="{left}" x2="{right}" y1="{y(base):.1f}" y2="{y(last):.1f}" stroke="{color}" '
            f'stroke-opacity="0.55"><title>{escape(r["patient"])}: {base:g}% -> {last:g}%</title></line>'
        )
    if not rows:
        parts.append(
            '<text x="80" y="40" class="lbl">no flagged patient with a baseline and a latest LVEF</text>'
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


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


TEMPLATE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>HER2 cohort review - {{ s.as_of[:10] }}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:13px}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:130px}
.card .n{font-size:24px;font-weight:600}.card .t{font-size:12px;color:#555}
.ok{color:#2e7d32}.bad{color:#c62828}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(640px,1fr));gap:8px}
.chart .lbl{font-size:12px;fill:#333}.chart .val{font-size:12px;fill:#111}
table{border-collapse:collapse;font-size:12.5px;width:100%}th,td{border-bottom:1px solid #eee;padding:4px 6px;text-align:left}
th{background:#f5f5f5;cursor:pointer;position:sticky;top:0;user-select:none}th.sorted-asc::after{content:" \\25B2"}
th.sorted-desc::after{content:" \\25BC"}td.num{text-align:right;font-variant-numeric:tabular-nums}
.sev-critical{color:#c62828;font-weight:600}.sev-warning{color:#b26a00;font-weight:600}.sev-info{color:#1976d2}
code{font-size:12px}#filter{padding:5px;width:320px;margin:6px 0}
</style></head><body>
<h1>HER2 cohort review</h1>
<div class="meta">as of {{ s.as_of }} &middot; input {{ s.input }} ({{ s.input_kind }}) &middot; rules digest
<code>{{ s.rules_digest[:12] }}</code> &middot; {{ s.executor }} &middot; {{ s.partitions }} partitions</div>
<div class="cards">
<div class="card"><div class="n" id="n-patients-in">{{ s.patients_in }}</div><div class="t">patients in</div></div>
<div class="card"><div class="n" id="n-evaluated">{{ s.evaluated }}</div><div class="t">evaluated</div></div>
<div class="card"><div class="n" id="n-rejected">{{ s.rejected }}</div><div class="t">rejected (errors.jsonl)</div></div>
<div class="card"><div class="n" id="n-needs-action">{{ needs_action }}</div><div class="t">patients needing action</div></div>
<div class="card"><div class="n" id="n-findings">{{ s.findings }}</div><div class="t">findings</div></div>
<div class="card"><div class="n" id="n-errors">{{ s.error_records }}</div><div class="t">records in errors.jsonl</div></div>
<div class="card"><div class="n {{ 'ok' if s.reconciled else 'bad' }}" id="reconciled">{{ 'reconciled' if s.reconciled else 'NOT reconciled' }}</div>
<div class="t">patients in = evaluated + rejected</div></div>
</div>
<h2>Findings by code</h2>
<table id="findings-by-code"><thead><tr><th>code</th><th>kind</th><th>severity</th><th>patients</th><th>review required</th><th>what it means</th></tr></thead><tbody>
{% for r in by_code %}<tr><td><code>{{ r.code }}</code></td><td>{{ r.kind }}</td><td class="sev-{{ r.severity }}">{{ r.severity }}</td>
<td class="num" data-code="{{ r.code }}">{{ r.patients }}</td><td class="num">{{ r.review }}</td><td>{{ r.summary }}</td></tr>{% endfor %}
</tbody></table>
<div class="grid">
<div><h2>Patients by finding code</h2>{{ charts.codes|safe }}</div>
<div><h2>HER2 category</h2>{{ charts.her2|safe }}<h2>Setting and line of therapy</h2>{{ charts.lines|safe }}</div>
<div><h2>Platelets (latest, 10&sup3;/&micro;L)</h2>{{ charts.platelets|safe }}</div>
<div><h2>Neutrophils (latest ANC, 10&#8313;/L)</h2>{{ charts.anc|safe }}</div>
<div><h2>AST/ALT (latest, max &times;ULN)</h2>{{ charts.transaminases|safe }}</div>
<div><h2>Total bilirubin (latest, &times;ULN)</h2>{{ charts.bilirubin|safe }}</div>
<div><h2>LVEF trend for flagged patients ({{ lvef_n }})</h2>{{ charts.lvef|safe }}</div>
<div><h2>Data problems (errors.jsonl by kind)</h2>{{ charts.errors|safe }}</div>
</div>
<h2>Worklist: patients needing action</h2>
<div class="meta" id="worklist-count">{{ worklist|length }} of {{ needs_action }} patients needing action shown
{%- if worklist|length < needs_action %} (most urgent first; the rest are in patients.{{ fmt }} where needs_action is true){% endif %}.
Click a column to sort; type to filter.</div>
<input id="filter" placeholder="filter by finding code, drug or text" aria-label="filter worklist">
<table id="worklist"><thead><tr>
<th data-type="text">patient</th><th data-type="num">severity</th><th data-type="text">actions</th><th data-type="text">HER2</th>
<th data-type="text">setting</th><th data-type="num">line</th><th data-type="text">on drug</th><th data-type="num">platelets</th>
<th data-type="num">ANC</th><th data-type="num">AST xULN</th><th data-type="num">ALT xULN</th><th data-type="num">bili xULN</th>
<th data-type="num">LVEF</th><th data-type="num">LVEF drop</th></tr></thead><tbody>
{% for r in worklist %}<tr><td>{{ r.patient }}</td><td data-v="{{ r.rank }}" class="sev-{{ r.worst_severity }}">{{ r.worst_severity }}</td>
<td>{{ r.action_codes }}</td><td>{{ r.her2_category }}</td><td>{{ r.setting }}</td><td class="num" data-v="{{ r.line_v }}">{{ r.line }}</td>
<td>{{ r.on_drug }}</td><td class="num" data-v="{{ r.platelets_v }}">{{ r.platelets }}</td><td class="num" data-v="{{ r.anc_v }}">{{ r.anc }}</td>
<td class="num" data-v="{{ r.ast_v }}">{{ r.ast }}</td><td class="num" data-v="{{ r.alt_v }}">{{ r.alt }}</td>
<td class="num" data-v="{{ r.bili_v }}">{{ r.bili }}</td><td class="num" data-v="{{ r.lvef_v }}">{{ r.lvef }}</td>
<td class="num" data-v="{{ r.drop_v }}">{{ r.drop }}</td></tr>
{% endfor %}</tbody></table>
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


def _nan(value: Any) -> str:
    return "" if value is None else f"{value}"


def _worklist(patients: pa.Table) -> tuple[int, list[dict[str, Any]]]:
    flagged = patients.filter(pc.equal(patients["needs_action"], True))
    rows = flagged.select(
        [
            "patient",
            "worst_severity",
            "critical",
            "warning",
            "action_codes",
            "her2_category",
            "setting",
            "line",
            "on_drug",
            "platelets",
            "anc",
            "ast_x_uln",
            "alt_x_uln",
            "bilirubin_x_uln",
            "lvef",
            "lvef_drop",
        ]
    ).to_pylist()
    rows.sort(
        key=lambda r: (
            SEVERITY_RANK.get(r["worst_severity"] or "info", 3),
            -r["critical"],
            -r["warning"],
            r["patient"],
        )
    )
    out = []
    for r in rows[:WORKLIST_LIMIT]:
        out.append(
            {
                **r,
                "rank": SEVERITY_RANK.get(r["worst_severity"] or "info", 3),
                "action_codes": r["action_codes"] or "",
                "on_drug": r["on_drug"] or "",
                "her2_category": r["her2_category"] or "",
                "setting": r["setting"] or "",
                "line": _fmt(r["line"]),
                "line_v": _nan(r["line"]),
                "platelets": _fmt(r["platelets"], 0),
                "platelets_v": _nan(r["platelets"]),
                "anc": _fmt(r["anc"], 2),
                "anc_v": _nan(r["anc"]),
                "ast": _fmt(r["ast_x_uln"]),
                "ast_v": _nan(r["ast_x_uln"]),
                "alt": _fmt(r["alt_x_uln"]),
                "alt_v": _nan(r["alt_x_uln"]),
                "bili": _fmt(r["bilirubin_x_uln"]),
                "bili_v": _nan(r["bilirubin_x_uln"]),
                "lvef": _fmt(r["lvef"], 0),
                "lvef_v": _nan(r["lvef"]),
                "drop": _fmt(r["lvef_drop"], 0),
                "drop_v": _nan(r["lvef_drop"]),
            }
        )
    return flagged.num_rows, out


def _by_code(findings: pa.Table) -> list[dict[str, Any]]:
    if findings.num_rows == 0:
        return []
    distinct = (
        findings.select(["patient", "code", "kind", "severity"])
        .group_by(["code", "kind", "severity"])
        .aggregate([("patient", "count_distinct")])
    )
    review = (
        findings.filter(pc.equal(findings["review_required"], True))
        .group_by("code")
        .aggregate([("patient", "count")])
    )
    review_by = dict(zip(review["code"].to_pylist(), review["patient_count"].to_pylist(), strict=True))
    summaries: dict[str, str] = {}
    for code, summary in zip(findings["code"].to_pylist(), findings["summary"].to_pylist(), strict=True):
        summaries.setdefault(code, summary)
    rows = [
        {
            "code": c,
            "kind": k,
            "severity": s,
            "patients": n,
            "review": review_by.get(c, 0),
            "summary": summaries[c],
        }
        for c, k, s, n in zip(
            distinct["code"].to_pylist(),
            distinct["kind"].to_pylist(),
            distinct["severity"].to_pylist(),
            distinct["patient_count_distinct"].to_pylist(),
            strict=True,
        )
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


def render(out: Path) -> str:
    """The report page for the outputs in ``out``."""
    summary = orjson.loads((out / "summary.json").read_bytes())
    fmt = "parquet" if (out / "findings.parquet").exists() else "csv"
    findings = read_table(out, "findings")
    patients = read_table(out, "patients")
    by_code = _by_code(findings)
    needs_action, worklist = _worklist(patients)
    her2 = _counts(patients, "her2_category")
    her2_order = ["positive", "equivocal", "low", "ultralow", "zero", "negative", "unknown"]
    setting = patients.select(["setting", "line"]).to_pylist()
    line_counts: Counter[str] = Counter()
    for r in setting:
        if r["setting"] == "metastatic":
            line = r["line"] or 0
            line_counts[f"metastatic: {'3+' if line >= 3 else line} prior line(s)"] += 1
        else:
            line_counts[str(r["setting"])] += 1
    labs = patients.select(["platelets", "anc", "ast_x_uln", "alt_x_uln", "bilirubin_x_uln"]).to_pylist()
    transaminase = [
        max((v for v in (r["ast_x_uln"], r["alt_x_uln"]) if v is not None), default=None) for r in labs
    ]
    lvef_codes = {r["code"] for r in by_code if "lvef" in r["code"]}
    flagged_ids = (
        set(
            findings.filter(pc.is_in(findings["code"], pa.array(sorted(lvef_codes), pa.string())))[
                "patient"
            ].to_pylist()
        )
        if lvef_codes
        else set()
    )
    lvef_rows = [
        r
        for r in patients.select(["patient", "lvef", "lvef_baseline"]).to_pylist()
        if r["patient"] in flagged_ids and r["lvef"] is not None and r["lvef_baseline"] is not None
    ]
    lvef_rows.sort(key=lambda r: r["patient"])
    errors = _error_kinds(out / "errors.jsonl")
    charts = {
        "codes": bar_chart(
            [Bar(r["code"], r["patients"], COLORS[r["severity"]]) for r in by_code],
            "chart-codes",
            "patients by finding code",
        ),
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
        "lvef": lvef_chart(lvef_rows[:300], "chart-lvef"),
        "errors": bar_chart([Bar(k, v) for k, v in sorted(errors.items())], "chart-errors", "errors by kind"),
    }
    return TEMPLATE.render(
        s=summary,
        by_code=by_code,
        charts=charts,
        worklist=worklist,
        needs_action=needs_action,
        fmt=fmt,
        lvef_n=len(lvef_rows),
    )


def write_report(out: Path) -> Path:
    """Render and write ``out/report.html``."""
    target = out / "report.html"
    target.write_text(render(out), encoding="utf-8")
    return target
