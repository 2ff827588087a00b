"""Command line: ``cds evaluate`` and ``cds rules list``; the other commands register below.

Exit codes: 0 success; 2 bad input or invalid rules (one line per problem, never a traceback);
1 an internal engine failure (reported in one line; run with CDS_DEBUG=1 for the traceback).

Start-up is cheap: ``cds --help`` loads typer, rich and ``cds.config`` only; each command imports
the engine, web, database or dataframe modules it needs when it runs.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cds import config
from cds.clikit import (
    AsOfOpt,
    DraftsOpt,
    RulesOpt,
    ValidateOpt,
    as_of_or_exit,
    err,
    fail,
    format_option,
    load_rules_or_exit,
)
from cds.errors import CdsError, InputRejected, outcome_of

if TYPE_CHECKING:
    from cds.engine.library import RuleLibrary
    from cds.evaluate import Result
    from cds.facts.model import PatientFacts
    from cds.findings.model import Evaluation

app = typer.Typer(
    help=(
        "HER2 breast cancer clinical decision support: evaluate FHIR R4 patients against "
        "pharmacist-authored rules and explain every finding.\n\n"
        "Example: cds evaluate fhir_samples/mbc-second-line.json --as-of 2026-11-01"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: flags print as flags (--trace), not as --trace <bool>
)
rules_app = typer.Typer(
    help="Inspect, test and author the rule sets.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(rules_app, name="rules")

out = Console(highlight=False, soft_wrap=False, width=160)
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
KINDS = ("recommendation", "alert", "data-gap", "info")
SEVERITIES = ("critical", "warning", "info")

_fail = fail


def _print_version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        number = version("her2-cds")
    except PackageNotFoundError:
        number = "unknown (not installed)"
    typer.echo(f"her2-cds {number}")
    raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Runs before every command (only ``--version`` lives here)."""


def _library(rules: Path | None, include_drafts: bool) -> RuleLibrary:
    return load_rules_or_exit(rules, config.statuses(include_drafts))


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
        out.print(f"No findings: no rule fired. {conclusion(result.facts)}", markup=False, soft_wrap=True)
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


def conclusion(facts: PatientFacts) -> str:
    """One line on what was read from the record, so "no findings" never stands alone."""
    her2 = facts.her2
    tested = f" (latest test {her2.episode_date})" if her2.episode_date else ""
    setting = {
        "metastatic": "metastatic setting",
        "early": "early setting",
        "none": "no breast cancer setting recorded",
    }[facts.setting]
    therapy = (
        "on HER2-directed therapy" if facts.therapy.on_her2_directed else "no current HER2-directed therapy"
    )
    return f"Concluded from the record: HER2 {her2.category}{tested}; {setting}; {therapy}."


def summary_line(evaluations: list[Evaluation], rejected: int) -> str:
    """Patients, findings by kind and by severity, and rejected files, for a run over many files."""
    findings = [f for ev in evaluations for f in ev.findings]
    kinds: Counter[str] = Counter(f.kind for f in findings)
    severities: Counter[str] = Counter(f.severity for f in findings)
    silent = sum(1 for ev in evaluations if not ev.findings)
    by_kind = ", ".join(f"{kinds[k]} {k}" for k in KINDS)
    by_severity = ", ".join(f"{severities[s]} {s}" for s in SEVERITIES)
    files = len(evaluations) + rejected
    return (
        f"{files} file(s): {len(evaluations)} patient(s) evaluated, {rejected} rejected; "
        f"{len(findings)} finding(s): {by_kind} ({by_severity}); {silent} patient(s) without findings"
    )


def fhir_resources(result: Result, library: RuleLibrary) -> list[dict[str, Any]]:
    """The evaluation as FHIR R4 resources (GuidanceResponse, DetectedIssue per alert, RequestGroup)."""
    from cds.engine.runtime import getter
    from cds.findings.fhir_out import to_resources
    from cds.findings.wording import drug_names_of, load_wording

    wording = load_wording(library.directory, drug_names_of(library.catalogue))
    return to_resources(result.evaluation, wording, getter(result.facts), library.catalogue)


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
            metavar="FILES...",
            show_default=False,
        ),
    ],
    output_format: Annotated[
        str,
        format_option(
            "text",
            "json",
            "fhir",
            help="Output: text (for people) or json (for programs); also fhir (an R4 transaction "
            "Bundle: GuidanceResponse, DetectedIssue per alert, RequestGroup; see docs/fhir-output.md).",
        ),
    ] = "text",
    as_of: AsOfOpt = None,
    order: Annotated[
        Path | None,
        typer.Option("--order", help="A draft MedicationRequest (JSON) to check as if being ordered."),
    ] = None,
    trace: Annotated[
        bool, typer.Option("--trace", help="Also show every rule, fired or not, and why.")
    ] = False,
    rules: RulesOpt = None,
    include_drafts: DraftsOpt = False,
    validate: ValidateOpt = "selected",
) -> None:
    """Evaluate patients and print findings (recommendations, safety alerts, data gaps)."""
    from cds.evaluate import Evaluator
    from cds.fhir.source import raw_patient_from_path, read_order

    instant = as_of_or_exit(as_of)
    library = _library(rules, include_drafts)
    evaluator = Evaluator(library, validate="all" if validate == "all" else "selected")
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
    if len(files) > 1:
        config.tune_gc()  # a long run over many patients, like a cohort worker
    results: list[bytes] = []
    resources: list[dict[str, Any]] = []
    evaluations: list[Evaluation] = []
    rejected = 0  # the exit code of the last rejection (0: none)
    rejected_count = 0
    for path in files:
        try:
            result = evaluator.evaluate(raw_patient_from_path(path), as_of=instant, order=draft, trace=trace)
        except InputRejected as exc:
            rejected = outcome_of(exc).exit_code
            rejected_count += 1
            err.print(f"error: {exc}", markup=False)
            continue
        except CdsError as exc:
            err.print(f"error: {path}: internal evaluation failure: {exc}", markup=False)
            raise typer.Exit(outcome_of(exc).exit_code) from exc
        evaluations.append(result.evaluation)
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
        import orjson

        from cds.findings.fhir_out import transaction_bundle

        bundle = transaction_bundle(resources)
        sys.stdout.buffer.write(orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n")
    if output_format == "text" and len(files) > 1:
        out.print(summary_line(evaluations, rejected_count), markup=False, soft_wrap=True)
    if rejected:
        raise typer.Exit(rejected)


@rules_app.command("list")
def rules_list(
    rules: RulesOpt = None,
    include_drafts: DraftsOpt = False,
    output_format: Annotated[
        str,
        format_option(
            "text",
            "json",
            "markdown",
            help="Output: text (for people) or json (for programs); also markdown (the "
            "docs/clinical-content.md page).",
        ),
    ] = "text",
) -> None:
    """List rule sets with version and status, and every rule id with its finding code."""
    import orjson

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


def _public_source(text: str) -> str:
    """A parameter's source as readers of the repository can follow it: the rule files cite the
    project's internal specification and knowledge base by section, which this page names plainly."""
    text = re.sub(r"clinical-spec §\d+(?:, §\d+)*", "project specification", text)
    return re.sub(r"clinical-knowledge\.md §\d+", "project knowledge base", text)


def clinical_content_markdown(library: RuleLibrary) -> str:
    """Every rule as a reviewable table: id, what it does, evidence, verified or not."""
    lines = [
        "# Clinical content",
        "",
        "Generated from the rule files by `cds rules list --format markdown > docs/clinical-content.md`",
        "(a test fails when this page and the rules disagree). Unverified rules fire with",
        "`review_required: true` and ask to verify against the current label. Parameters are listed",
        "per rule set; every threshold lives there, not in Python. A parameter sourced to the *project",
        "specification* is a default this project chose (local policy): review it for your site.",
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
                    f"| {_public_source(param.source or '')} |"
                )
            lines.append("")
    return "\n".join(lines) + "\n"


# --- sub-commands owned by other packages: each registers itself on the line(s) below ---
from cds.api.cli import feedback_app, hooks_app, serve_command  # noqa: E402

app.command("serve")(serve_command)
app.add_typer(feedback_app, name="feedback")
app.add_typer(hooks_app, name="hooks")
from cds.authoring.cli import register as _register_authoring  # noqa: E402

_register_authoring(app, rules_app)
from cds.cohort.cli import cohort_app  # noqa: E402

app.add_typer(cohort_app, name="cohort")


def main() -> None:
    """Console entry point: run the app; map unexpected failures to one line (exit 1)."""
    try:
        app(prog_name="cds")
    except SystemExit:
        raise
    except Exception as exc:  # never print a traceback to users
        if os.environ.get("CDS_DEBUG"):
            raise
        err.print(f"error: internal failure: {type(exc).__name__}: {exc}", markup=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
