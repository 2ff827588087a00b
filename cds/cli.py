"""Command line: ``cds evaluate`` and ``cds rules list``.

Exit codes: 0 success; 2 bad input or invalid rules (one line per problem, never a traceback);
1 an internal engine failure (reported in one line; run with CDS_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from cds.clikit import err, fail, load_rules_or_exit
from cds.engine.library import RuleLibrary
from cds.engine.runtime import getter
from cds.errors import CdsError, InputRejected
from cds.evaluate import Evaluator, Result, default_rules_dir, parse_as_of
from cds.fhir.source import raw_patient_from_path, read_order
from cds.findings.fhir_out import to_resources, transaction_bundle
from cds.findings.wording import load_wording

app = typer.Typer(
    help=(
        "HER2 breast cancer clinical decision support: evaluate FHIR R4 patients against "
        "pharmacist-authored rules and explain every finding.\n\n"
        "Example: cds evaluate fhir_samples/mbc-second-line.json --as-of 2026-11-01"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
rules_app = typer.Typer(help="Inspect the rule sets.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")

out = Console(highlight=False, soft_wrap=False, width=160)

RulesOpt = Annotated[
    Path | None,
    typer.Option(
        "--rules", help="Rules directory (default: $CDS_RULES_DIR or the bundled rules/).", show_default=False
    ),
]
DraftsOpt = Annotated[
    bool,
    typer.Option("--include-drafts", help="Also load draft and in-review rule sets (never in production)."),
]
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


_fail = fail


def _library(rules: Path | None, include_drafts: bool) -> RuleLibrary:
    directory = rules or Path(os.environ.get("CDS_RULES_DIR") or default_rules_dir())
    statuses = {"approved", "in-review", "draft"} if include_drafts else {"approved"}
    return load_rules_or_exit(directory, statuses)


def _expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.glob("*.json") if p.is_file()))
        else:
            files.append(path)
    return files


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _print_table(result: Result, origin: str) -> None:
    ev = result.evaluation
    names = ", ".join(f"{r.name}@{r.version}" for r in ev.rulesets)
    out.print(f"[bold]{ev.patient}[/bold]  ({origin})  as of {ev.as_of}", markup=True)
    out.print(f"rules: {names}", markup=False, style="dim")
    if not ev.findings:
        out.print("No findings.", markup=False)
    else:
        table = Table(show_lines=False, expand=False)
        table.add_column("severity")
        table.add_column("kind")
        table.add_column("code", no_wrap=True)
        table.add_column("strength / action")
        table.add_column("summary", overflow="fold", max_width=80)
        table.add_column("review")
        for f in ev.findings:
            table.add_row(
                f"[{SEVERITY_STYLE[f.severity]}]{f.severity}[/]",
                f.kind,
                f.code,
                _cell(f.strength or f.action),
                f.summary,
                "yes" if f.review_required else "",
            )
        out.print(table)
    if ev.skipped:
        out.print(f"{len(ev.skipped)} resource(s) skipped:", markup=False, style="yellow")
        for s in ev.skipped:
            out.print(f"  {s.resource}: {s.reason}", markup=False)
    out.print("")


def fhir_resources(result: Result, library: RuleLibrary) -> list[dict[str, Any]]:
    """The evaluation as FHIR resources (GuidanceResponse, DetectedIssue per alert, RequestGroup)."""
    return to_resources(result.evaluation, load_wording(library.directory), getter(result.facts))


def _print_trace(result: Result) -> None:
    assert result.trace is not None
    table = Table(title="rule trace", show_lines=False)
    table.add_column("ruleset")
    table.add_column("rule", no_wrap=True)
    table.add_column("fired")
    table.add_column("why not (first failing condition, patient value)", overflow="fold", max_width=90)
    for t in result.trace:
        table.add_row(f"{t.ruleset}@{t.version}", t.rule_id, "yes" if t.fired else "", t.reason or "")
    out.print(table)
    for s in result.suppressed:
        out.print(
            f"suppressed {s.code} ({s.rule}) by policy {s.by_policy} because of {s.because_of}", markup=False
        )


@app.command()
def evaluate(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Patient files: a FHIR R4 Bundle, a JSON array of resources or one patient's NDJSON; "
            "a directory means every *.json in it.",
            show_default=False,
        ),
    ],
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="table, json, or fhir (an R4 transaction Bundle).")
    ] = "table",
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="Evaluate as of this date (YYYY-MM-DD, end of day UTC) or instant; default now."
        ),
    ] = None,
    order: Annotated[
        Path | None,
        typer.Option("--order", help="A draft MedicationRequest (JSON) to check as if being ordered."),
    ] = None,
    trace: Annotated[
        bool, typer.Option("--trace", help="Also show every rule, fired or not, and why.")
    ] = False,
    rules: RulesOpt = None,
    include_drafts: DraftsOpt = False,
) -> None:
    """Evaluate patients and print findings (recommendations, safety alerts, data gaps)."""
    if output_format not in ("table", "json", "fhir"):
        raise _fail(f"--format must be table, json or fhir, not {output_format!r}")
    try:
        instant = parse_as_of(as_of)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    library = _library(rules, include_drafts)
    evaluator = Evaluator(library)
    draft = None
    if order is not None:
        try:
            draft = read_order(order.read_bytes(), str(order))
        except OSError as exc:
            raise _fail(f"{order}: cannot read ({exc.strerror})") from exc
        except InputRejected as exc:
            raise _fail(str(exc)) from exc
    files = _expand(paths)
    if not files:
        raise _fail("no patient files given (a directory had no *.json)")
    results: list[bytes] = []
    resources: list[dict[str, Any]] = []
    rejected = 0
    for path in files:
        try:
            result = evaluator.evaluate(raw_patient_from_path(path), as_of=instant, order=draft, trace=trace)
        except InputRejected as exc:
            rejected += 1
            err.print(f"error: {exc}", markup=False)
            continue
        except CdsError as exc:
            err.print(f"error: {path}: internal evaluation failure: {exc}", markup=False)
            raise typer.Exit(1) from exc
        if output_format == "json":
            results.append(result.evaluation.to_json())
        elif output_format == "fhir":
            resources.extend(fhir_resources(result, library))
        else:
            _print_table(result, str(path))
            if trace:
                _print_trace(result)
    if output_format == "json" and results:
        if len(files) == 1:
            sys.stdout.buffer.write(results[0] + b"\n")
        else:
            sys.stdout.buffer.write(b"[\n" + b",\n".join(results) + b"\n]\n")
    if output_format == "fhir" and resources:
        sys.stdout.buffer.write(
            orjson.dumps(transaction_bundle(resources), option=orjson.OPT_INDENT_2) + b"\n"
        )
    if rejected:
        raise typer.Exit(2)


@rules_app.command("list")
def rules_list(
    rules: RulesOpt = None,
    include_drafts: DraftsOpt = False,
    output_format: Annotated[
        str,
        typer.Option("--format", "-f", help="table, json, or markdown (the docs/clinical-content.md page)."),
    ] = "table",
) -> None:
    """List rule sets with version and status, and every rule id with its finding code."""
    library = _library(rules, include_drafts)
    if output_format == "markdown":
        sys.stdout.write(clinical_content_markdown(library))
        return
    if output_format == "json":
        data = [
            {
                "ruleset": rs.name,
                "version": rs.version,
                "status": rs.spec.status,
                "approved_by": rs.spec.approved_by,
                "file": rs.source.name,
                "rules": [
                    {
                        "id": rid,
                        "code": c.rule.then.code,
                        "kind": c.rule.then.kind,
                        "evidence_status": c.rule.evidence_status,
                    }
                    for rid, c in sorted(rs.rules.items())
                ],
            }
            for rs in library.rulesets
        ]
        sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
        return
    summary = Table(title=f"rule sets in {library.directory}")
    for col in ("ruleset", "version", "status", "rules", "parameters", "file"):
        summary.add_column(col)
    for rs in library.rulesets:
        summary.add_row(
            rs.name,
            rs.version,
            rs.spec.status,
            str(len(rs.rules)),
            str(len(rs.spec.parameters)),
            rs.source.name,
        )
    out.print(summary)
    for name, version, status in library.excluded:
        out.print(f"not loaded: {name}@{version} ({status}; use --include-drafts)", markup=False, style="dim")
    for rs in library.rulesets:
        if not rs.rules:
            continue
        table = Table(title=f"{rs.name}@{rs.version}")
        for col in ("rule id", "finding code", "kind", "evidence", "title"):
            table.add_column(col, overflow="fold")
        for rid, c in sorted(rs.rules.items()):
            table.add_row(rid, c.rule.then.code, c.rule.then.kind, c.rule.evidence_status, c.rule.title)
        out.print(table)


def clinical_content_markdown(library: RuleLibrary) -> str:
    """Every rule as a reviewable table: id, what it does, evidence, verified or not."""
    lines = [
        "# Clinical content",
        "",
        "Generated from the rule files by `cds rules list --format markdown > docs/clinical-content.md`",
        "(a test fails when this page and the rules disagree). Unverified rules fire with",
        "`review_required: true` and ask to verify against the current label. Parameters are listed",
        "per rule set; every threshold lives there, not in Python.",
        "",
    ]
    for rs in library.rulesets:
        spec = rs.spec
        lines += [f"## {rs.name} {rs.version} ({spec.status})", "", spec.description, ""]
        if spec.approved_by:
            lines += [f"Approved by: {spec.approved_by}, {spec.approved_on}", ""]
        if rs.rules:
            lines += ["| rule | finding | what it does | evidence | status |", "|---|---|---|---|---|"]
            for rid, compiled in sorted(rs.rules.items()):
                rule = compiled.rule
                evidence = ", ".join(library.evidence.evidence[k].label for k in rule.then.evidence) or "-"
                what = f"**{rule.title}.** {' '.join(rule.description.split())}".replace("|", "/")
                detail = rule.then.strength or rule.then.action or rule.then.kind
                lines.append(
                    f"| `{rid}` | `{rule.then.code}` ({detail}) | {what} | {evidence} "
                    f"| {rule.evidence_status} |"
                )
            lines.append("")
        if spec.parameters:
            lines += ["| parameter | value | unit | meaning | source |", "|---|---|---|---|---|"]
            for name, param in spec.parameters.items():
                value = (
                    param.value
                    if not isinstance(param.value, list)
                    else ", ".join(str(v) for v in param.value)
                )
                lines.append(
                    f"| `{name}` | {value} | {param.unit or ''} | {param.description} "
                    f"| {param.source or ''} |"
                )
            lines.append("")
    return "\n".join(lines) + "\n"


# --- sub-commands owned by other packages: each registers itself on the line(s) below ---
from cds.api.cli import feedback_app, serve_command  # noqa: E402

app.command("serve")(serve_command)
app.add_typer(feedback_app, name="feedback")
from cds.authoring.cli import register as _register_authoring  # noqa: E402

_register_authoring(app, rules_app)
from cds.cohort.cli import cohort_app  # noqa: E402

app.add_typer(cohort_app, name="cohort")


def main() -> None:
    """Console entry point: run the app; map unexpected failures to one line (exit 1)."""
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:  # never print a traceback to users
        if os.environ.get("CDS_DEBUG"):
            raise
        err.print(f"error: internal failure: {type(exc).__name__}: {exc}", markup=False)
        sys.exit(1)
