"""``cds rules diff``: what changes for real patients if a rule edit ships.

Both rule versions (the working directory, and a git ref, another directory, a ruleset version
or in-memory parameter overrides from the workbench) are evaluated over the same cohort; patients
whose findings differ are grouped by rule and change type (now fires, no longer fires, changed),
each with a few example patients and why (the first failing condition on the side where the rule
does not fire, with the patient's value).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment

from cds.authoring import gitutil
from cds.authoring.cohort import CohortPatient, run_patient
from cds.authoring.explain import describe_failure, failing
from cds.engine.library import RuleLibrary, load_library
from cds.engine.runtime import getter
from cds.errors import ConfigurationError, InputRejected
from cds.evaluate import Evaluator, Result
from cds.findings.model import Finding

SEMVER_REF = re.compile(r"^(?:(?P<name>[a-z0-9][a-z0-9.\-]*)@)?v?(?P<version>\d+\.\d+\.\d+)$")
COMPARED = ("severity", "action", "strength", "regimen", "review_required", "summary")


@contextmanager
def resolve_rules(against: str, current: Path) -> Iterator[tuple[Path, str]]:
    """A rules directory for ``against`` (directory, git ref, ``[ruleset@]X.Y.Z``) and a label."""
    candidate = Path(against)
    if candidate.is_dir():
        yield candidate, f"directory {candidate}"
        return
    root = gitutil.repo_root(current)
    if root is None:
        raise ConfigurationError(f"--against {against!r}: not a directory, and {current} is not in git")
    rel = gitutil.relative(root, current)
    with tempfile.TemporaryDirectory(prefix="cds-rules-") as tmp:
        target = Path(tmp)
        match = SEMVER_REF.match(against)
        tag = next(
            (t for t in (against, f"v{against}", f"rules-v{against}") if gitutil.is_commit(root, t)), None
        )
        if tag and not (match and match.group("name")):
            if gitutil.export_dir(root, tag, rel, target) == 0:
                raise ConfigurationError(f"--against {against!r}: no rules directory {rel} at that ref")
            yield target, f"git {tag}"
            return
        if match is None:
            raise ConfigurationError(
                f"--against {against!r} is not a directory, a git ref or a ruleset version "
                "(X.Y.Z or name@X.Y.Z)"
            )
        _copy_tree(current, target)
        found = _files_at_version(root, current, rel, match.group("version"), match.group("name"))
        if not found:
            raise ConfigurationError(f"--against {against!r}: no committed rule file has that version")
        for name, text in found.items():
            (target / name).write_text(text, encoding="utf-8")
        yield target, f"version {against} ({', '.join(sorted(found))} from git history)"


def _copy_tree(src: Path, dest: Path) -> None:
    for path in src.rglob("*"):
        if path.is_file():
            out = dest / path.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(path.read_bytes())


def _files_at_version(
    root: Path, current: Path, rel: str, version: str, ruleset: str | None
) -> dict[str, str]:
    """Each rule file as of its newest commit declaring ``version`` (only ``ruleset`` when given)."""
    out: dict[str, str] = {}
    for path in sorted(current.glob("*.yaml")):
        relpath = gitutil.relative(root, path)
        for commit, _date, _author, _subject in gitutil.log(root, relpath):
            text = gitutil.show(root, commit, relpath)
            if text is None:
                continue
            data = yaml.safe_load(text)
            if not isinstance(data, dict):
                continue
            if ruleset and data.get("ruleset") != ruleset:
                break
            if str(data.get("version")) == version:
                out[path.name] = text
                break
    return out


@dataclass
class Change:
    """One patient whose findings differ for one rule."""

    patient: str
    code: str
    rule: str
    kind: str  # now fires | no longer fires | changed
    before: str
    after: str
    why: str


@dataclass
class ImpactReport:
    """Patients whose findings change, grouped by (rule, change type)."""

    old_label: str
    new_label: str
    patients: int
    changed_patients: list[str] = field(default_factory=list)
    groups: dict[tuple[str, str, str], list[Change]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    old_versions: dict[str, str] = field(default_factory=dict)
    new_versions: dict[str, str] = field(default_factory=dict)

    def add(self, change: Change) -> None:
        """File a change under its rule, finding code and change type."""
        self.groups.setdefault((change.rule, change.code, change.kind), []).append(change)

    def summary_rows(self) -> list[tuple[str, str, str, int, list[Change]]]:
        """(rule, code, change type, patient count, changes) sorted by rule then type."""
        return [(r, c, k, len(v), v) for (r, c, k), v in sorted(self.groups.items())]


def _why(library: RuleLibrary, result: Result, rule_id: str) -> str:
    try:
        _rs, compiled = library.rule(rule_id)
    except KeyError:
        return "rule not in this version"
    fails = failing(compiled.condition, getter(result.facts))
    if not fails:
        s = next((x for x in result.suppressed if x.rule == rule_id), None)
        return f"suppressed by policy {s.by_policy} ({s.because_of})" if s else "conditions hold"
    return "; ".join(describe_failure(c, result.facts, library) for c in fails[:2])


def _holds(library: RuleLibrary, result: Result, rule_id: str) -> str:
    try:
        _rs, compiled = library.rule(rule_id)
    except KeyError:
        return ""
    get = getter(result.facts)
    return ", ".join(f"{p} = {get(p)}" for p in compiled.paths)


def _fmt_finding(f: Finding) -> str:
    extra = f.action or f.strength or ""
    return f"{f.code} [{f.severity}{'/' + extra if extra else ''}{', review' if f.review_required else ''}]"


def compare(
    old_lib: RuleLibrary,
    new_lib: RuleLibrary,
    cohort: list[CohortPatient],
    *,
    as_of: datetime | None = None,
    old_label: str = "before",
    new_label: str = "after",
    progress: Callable[[str, int, int], None] | None = None,
) -> ImpactReport:
    """Evaluate the cohort under both libraries and collect every finding that differs
    (``progress(stage, done, total)`` is told after each patient)."""
    old_ev, new_ev = Evaluator(old_lib), Evaluator(new_lib)
    report = ImpactReport(
        old_label,
        new_label,
        len(cohort),
        old_versions={r.name: r.version for r in old_lib.rulesets},
        new_versions={r.name: r.version for r in new_lib.rulesets},
    )
    for done, patient in enumerate(cohort):
        if progress is not None:
            progress("evaluating sample patients", done, len(cohort))
        try:
            before = run_patient(old_ev, patient, as_of)
            after = run_patient(new_ev, patient, as_of)
        except InputRejected as exc:
            report.errors.append(f"{patient.name}: {exc}")
            continue
        old_f = {f.code: f for f in before.evaluation.findings}
        new_f = {f.code: f for f in after.evaluation.findings}
        changed = False
        for code in sorted(set(old_f) | set(new_f)):
            o, n = old_f.get(code), new_f.get(code)
            if o is not None and n is None:
                why = _why(new_lib, after, o.rule.id)
                report.add(
                    Change(patient.name, code, o.rule.id, "no longer fires", _fmt_finding(o), "-", why)
                )
            elif n is not None and o is None:
                now = _holds(new_lib, after, n.rule.id)
                why = f"now holds: {now}; before: {_why(old_lib, before, n.rule.id)}"
                report.add(Change(patient.name, code, n.rule.id, "now fires", "-", _fmt_finding(n), why))
            elif o is not None and n is not None:
                diffs = [k for k in COMPARED if getattr(o, k) != getattr(n, k)]
                if o.rule.id != n.rule.id:
                    diffs.insert(0, "rule")
                if not diffs:
                    continue
                why = "; ".join(
                    f"{k}: {getattr(o, k) if k != 'rule' else o.rule.id} -> "
                    f"{getattr(n, k) if k != 'rule' else n.rule.id}"
                    for k in diffs
                )
                report.add(
                    Change(patient.name, code, n.rule.id, "changed", _fmt_finding(o), _fmt_finding(n), why)
                )
            else:
                continue
            changed = True
        if changed:
            report.changed_patients.append(patient.name)
    if progress is not None:
        progress("evaluating sample patients", len(cohort), len(cohort))
    return report


def diff_directories(
    current: Path,
    against: str,
    cohort: list[CohortPatient],
    *,
    statuses: set[str],
    as_of: datetime | None = None,
) -> ImpactReport:
    """``rules diff``: the working rules against another version, over a cohort."""
    with resolve_rules(against, current) as (old_dir, label):
        old_lib = load_library(old_dir, statuses=statuses)
    new_lib = load_library(current, statuses=statuses)
    return compare(old_lib, new_lib, cohort, as_of=as_of, old_label=label, new_label=f"working {current}")


def render_text(report: ImpactReport, examples: int = 3) -> str:
    """The plain-text impact report."""
    lines = [
        f"Impact of {report.new_label} vs {report.old_label}: {len(report.changed_patients)} of "
        f"{report.patients} patients change"
    ]
    versions = sorted(set(report.old_versions) | set(report.new_versions))
    bumps = [
        f"{n} {report.old_versions.get(n, '-')} -> {report.new_versions.get(n, '-')}"
        for n in versions
        if report.old_versions.get(n) != report.new_versions.get(n)
    ]
    if bumps:
        lines.append("ruleset versions: " + "; ".join(bumps))
    for rule, code, kind, count, changes in report.summary_rows():
        lines.append(f"\n{rule} ({code}) {kind}: {count} patient(s)")
        for c in changes[:examples]:
            lines.append(f"  {c.patient}: {c.before} -> {c.after}")
            lines.append(f"    why: {c.why}")
        if count > examples:
            lines.append(
                f"  ... and {count - examples} more: {', '.join(c.patient for c in changes[examples:])}"
            )
    for err in report.errors:
        lines.append(f"not evaluated: {err}")
    if not report.groups:
        lines.append("No patient's findings change.")
    return "\n".join(lines) + "\n"


HTML = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Rule change impact</title>
<style>body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:70rem}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
.now{color:#a40000}.no{color:#05620a}.changed{color:#8a5a00}</style></head><body>
{{ fragment }}</body></html>"""

FRAGMENT = """<div class="impact" data-changed="{{ r.changed_patients|length }}"
 data-patients='{{ r.changed_patients|tojson }}'>
<h2>Impact: {{ r.changed_patients|length }} of {{ r.patients }} patients change</h2>
<p>{{ r.new_label }} vs {{ r.old_label }}</p>
{% if not r.groups %}<p class="none">No patient's findings change.</p>{% else %}
<table><thead><tr><th>rule</th><th>finding</th><th>change</th>
<th>patients</th><th>examples (why)</th></tr></thead>
<tbody>{% for rule, code, kind, count, changes in r.summary_rows() %}
<tr class="impact-row" data-rule="{{ rule }}" data-kind="{{ kind }}"><td>{{ rule }}</td><td>{{ code }}</td>
<td class="{{ kind.split()[0] }}">{{ kind }}</td><td>{{ count }}</td><td><ul>
{% for c in changes[:examples] %}<li><b class="patient">{{ c.patient }}
</b>: {{ c.before }} &rarr; {{ c.after }}
<br><small>{{ c.why }}</small></li>{% endfor %}
{% if count > examples %}<li>... and {{ count - examples }} more</li>{% endif %}</ul></td></tr>
{% endfor %}</tbody></table>{% endif %}
{% for e in r.errors %}<p>not evaluated: {{ e }}</p>{% endfor %}</div>"""

_ENV = Environment(autoescape=True)


def render_html_fragment(report: ImpactReport, examples: int = 3) -> str:
    """The impact table as an HTML fragment (the workbench embeds it)."""
    return _ENV.from_string(FRAGMENT).render(r=report, examples=examples)


def render_html(report: ImpactReport, examples: int = 3) -> str:
    """A standalone HTML impact report (attach it to the review)."""
    from markupsafe import Markup

    return _ENV.from_string(HTML).render(fragment=Markup(render_html_fragment(report, examples)))


def as_dict(report: ImpactReport) -> dict[str, Any]:
    """JSON-ready form of the report."""
    return {
        "old": report.old_label,
        "new": report.new_label,
        "patients": report.patients,
        "changed_patients": report.changed_patients,
        "groups": [
            {"rule": r, "code": c, "change": k, "count": n, "examples": [vars(x) for x in ch]}
            for r, c, k, n, ch in report.summary_rows()
        ],
        "errors": report.errors,
    }
