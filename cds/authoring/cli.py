"""``cds rules lint|ack|test|explain|diff|new|promote|changelog`` and ``cds workbench``.

Registered on the core CLI by ``register(app, rules_app)``. Exit codes follow the core CLI:
0 success, 1 lint errors or failing tests (something to fix in the rules), 2 bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from cds import config
from cds.clikit import (
    DraftsOpt,
    EditableRulesOpt,
    RulesArg,
    RulesOpt,
    err,
    fail,
    format_option,
    load_rules_or_exit,
    rule_errors,
)
from cds.errors import ConfigurationError, InputRejected, RuleDefinitionError

out = Console(highlight=False, soft_wrap=False, width=180)
WORKING = config.WORKING_STATUSES
_statuses = config.statuses


_die = fail
_load = load_rules_or_exit


def lint_cmd(
    rules: RulesArg = None,
    cohort: Annotated[
        Path | None,
        typer.Option(
            "--cohort",
            help="Sample cohort for the co-fire check "
            "(default: fhir_samples/ next to the rules, if present).",
        ),
    ] = None,
    base: Annotated[
        str, typer.Option("--base", help="Git ref the version-bump check compares with.")
    ] = "HEAD",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the summary.")] = False,
    show_acknowledged: Annotated[
        bool,
        typer.Option(
            "--show-acknowledged",
            help="Also list the overlaps that are not warned about: acknowledged in a rule file "
            "(who, when, why) or resolved by a policy.",
        ),
    ] = False,
    output_format: Annotated[str, format_option("text", "json")] = "text",
) -> None:
    """Lint rule files: schema, references, never-firing rules, conflicting overlaps, evidence, versions.

    An overlap is two rules whose findings contradict (a preferred regimen and a hold on one of
    its drugs; one code with two outcomes) that can fire for the same patient. Review both rules:
    fix a real conflict, or record an intended one with `cds rules ack RULE OTHER`. Acknowledged
    overlaps are counted, not warned about, until either rule changes. Fact implications
    (rules/facts/implications.yaml) keep overlaps no patient can produce out of the list.
    """
    from cds.authoring.lint import lint

    rules = config.rules_dir(rules)
    sample = cohort if cohort is not None else rules.resolve().parent / "fhir_samples"
    report = lint(rules, cohort=sample if sample.exists() else None, base=base or None)
    acknowledged, resolved = report.reviewed("acknowledgement"), report.reviewed("policy")
    if output_format == "json":
        data = [
            {
                "severity": d.severity,
                "file": d.file,
                "line": d.line,
                "rule": d.rule,
                "field": d.field,
                "message": d.message,
            }
            for d in report.diagnostics
        ]
        if show_acknowledged:
            data += [
                {
                    "severity": "acknowledged" if a.by == "acknowledgement" else "resolved",
                    "file": a.diagnostic.file,
                    "line": a.diagnostic.line,
                    "rule": a.diagnostic.rule,
                    "field": None,
                    "message": a.diagnostic.message,
                    "note": a.note,
                }
                for a in (*acknowledged, *resolved)
            ]
        sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        for severity in ("error", "warning", "info"):
            if quiet and severity != "error":
                continue
            for d in report.of(severity):
                out.print(f"{severity}: {d}", markup=False)
        if show_acknowledged:
            for label, items in (("acknowledged", acknowledged), ("resolved", resolved)):
                for a in items:
                    out.print(f"{label}: {a.diagnostic}", markup=False)
                    out.print(f"    {a.note}", markup=False)
        errors, warnings = len(report.of("error")), len(report.of("warning"))
        out.print(f"checked: {'; '.join(report.checked) or 'schema only'}", markup=False)
        summary = f"{errors} error(s), {warnings} warning(s), {len(report.of('info'))} note(s)"
        if acknowledged or resolved:
            summary += (
                f"; {len(acknowledged)} overlap(s) acknowledged, {len(resolved)} resolved by policies"
                + ("" if show_acknowledged else " (--show-acknowledged lists them)")
            )
        out.print(summary, markup=False)
    if not report.ok:
        raise typer.Exit(1)


def ack_cmd(
    rule: Annotated[
        str, typer.Argument(help="A rule lint reports an overlap for (its file gets the entry).")
    ],
    other: Annotated[str, typer.Argument(help="The rule it overlaps with.")],
    reviewer: Annotated[
        str, typer.Option("--reviewer", help="Who reviewed both rules, e.g. 'J. Smith, oncology pharmacist'.")
    ],
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            help="Why both findings may show for the same patient (at least 20 characters), e.g. "
            "'the hold gates this dose; the recommendation names the regimen once it recovers'.",
        ),
    ],
    on: Annotated[str | None, typer.Option("--date", help="Review date YYYY-MM-DD (default: today).")] = None,
    rules: EditableRulesOpt = None,
) -> None:
    """Acknowledge an overlap `cds rules lint` reports as reviewed and intended.

    Writes an entry under acknowledged_overlaps in the first rule's file (comments and layout kept), with
    the reviewer, date, reason and a fingerprint of both rules as they are now. Lint then counts
    the overlap as acknowledged instead of warning, until either rule's conditions or outcome
    change: the acknowledgement is then reported as stale and the warning returns for a new
    review. Running it again for the same pair renews the entry. Acknowledgements are review
    metadata: they need no version bump. If the two rules really conflict, fix a rule instead.
    """
    from datetime import date

    from pydantic import ValidationError

    from cds.authoring.acks import acknowledge

    try:
        directory = config.editable_rules_dir(rules)
    except FileNotFoundError as exc:
        raise _die(str(exc)) from exc
    try:
        day = date.fromisoformat(on) if on else date.today()
        path, entry, renewed = acknowledge(directory, rule, other, reviewer=reviewer, reason=reason, on=day)
    except RuleDefinitionError as exc:
        raise rule_errors(exc) from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise _die(problems) from exc
    except ValueError as exc:
        raise _die(str(exc)) from exc
    verb = "renewed" if renewed else "acknowledged"
    out.print(
        f"{verb}: {entry.rule} overlaps {entry.other} in {path} (reviewer {entry.reviewer}, "
        f"{entry.date.isoformat()}, fingerprint {entry.fingerprint}); lint counts it as acknowledged "
        "until either rule changes",
        markup=False,
    )


def test_cmd(
    rules: RulesArg = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List passing cases too.")] = False,
) -> None:
    """Run every rule file's embedded test cases (draft and in-review files included)."""
    from cds.authoring.testing import explain_outcome, run_embedded_tests
    from cds.evaluate import Evaluator

    library = _load(rules, set(WORKING))
    evaluator = Evaluator(library)
    outcomes = run_embedded_tests(library, evaluator)
    failed = [o for o in outcomes if not o.passed]
    for o in outcomes:
        if o.passed and not verbose:
            continue
        out.print(f"{'PASS' if o.passed else 'FAIL'} {o.file}: {o.name}", markup=False)
        if not o.passed:
            for line in explain_outcome(library, evaluator, o):
                out.print(f"    {line}", markup=False)
    out.print(
        f"{len(outcomes) - len(failed)} passed, {len(failed)} failed ({len(outcomes)} cases in "
        f"{len(library.rulesets)} rulesets)",
        markup=False,
    )
    if failed:
        raise typer.Exit(1)


def explain_cmd(
    patient: Annotated[Path, typer.Argument(help="A patient bundle (FHIR R4 JSON).")],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help=config.AS_OF_HELP.replace("default now", "default: the sample's sidecar, else now"),
        ),
    ] = None,
    order: Annotated[Path | None, typer.Option("--order", help="A draft MedicationRequest (JSON).")] = None,
    rules: RulesOpt = None,
    include_drafts: DraftsOpt = False,
    only: Annotated[str | None, typer.Option("--rule", help="Only rules whose id contains this.")] = None,
    output_format: Annotated[str, format_option("text", "json")] = "text",
) -> None:
    """Every rule for one patient: fired or not, and the first failing condition with the patient's value."""
    from cds.authoring.cohort import bundle_patient
    from cds.authoring.explain import explain
    from cds.evaluate import Evaluator
    from cds.fhir.source import read_order

    library = _load(rules, _statuses(include_drafts))
    try:
        p = bundle_patient(patient)
        draft = read_order(order.read_bytes(), str(order)) if order else p.order
        instant = config.as_of(as_of or p.as_of)
        result = Evaluator(library).evaluate(p.raw, as_of=instant, order=draft)
    except (InputRejected, OSError, ValueError) as exc:
        raise _die(str(exc)) from exc
    rows = [e for e in explain(library, result) if not only or only in e.rule_id]
    if output_format == "json":
        sys.stdout.buffer.write(orjson.dumps([vars(e) for e in rows], option=orjson.OPT_INDENT_2) + b"\n")
        return
    ev = result.evaluation
    out.print(
        f"{ev.patient} ({patient}) as of {ev.as_of}; findings: {', '.join(ev.codes()) or 'none'}",
        markup=False,
    )
    table = Table(show_lines=False)
    for col in ("ruleset", "rule", "outcome", "why (first failing condition: patient value, source, date)"):
        table.add_column(col, overflow="fold")
    for e in rows:
        style = {"fired": "bold green", "suppressed": "yellow"}.get(e.outcome, "")
        table.add_row(
            f"{e.ruleset}@{e.version}",
            e.rule_id,
            f"[{style}]{e.outcome}[/]" if style else e.outcome,
            e.reason,
        )
    out.print(table)


def facts_cmd(
    contains: Annotated[
        str | None, typer.Argument(help="Only paths containing this, e.g. platelets or therapy.on.")
    ] = None,
    rules: RulesOpt = None,
    output_format: Annotated[str, format_option("text", "json")] = "text",
) -> None:
    """Every fact path a rule condition may name, with its type and meaning.

    Agent-keyed facts have one path per drug of the catalogue (therapy.on.tdm1, exposure.tdxd.ever,
    ...): adding a drug to rules/catalogue/ adds its paths. Lint names the closest paths when a rule
    uses one that does not exist.
    """
    from cds.facts.model import fact_descriptions
    from cds.knowledge.catalogue import load_catalogue

    directory = config.rules_dir(rules)
    try:
        agents = load_catalogue(directory / "catalogue").agent_ids()
    except (ConfigurationError, OSError) as exc:
        raise _die(str(exc)) from exc
    facts = {
        p: v for p, v in sorted(fact_descriptions(agents=agents).items()) if not contains or contains in p
    }
    if output_format == "json":
        rows = [{"path": p, "type": t, "description": d} for p, (t, d) in facts.items()]
        sys.stdout.buffer.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n")
        return
    table = Table(show_lines=False)
    for col in ("fact path", "type", "meaning"):
        table.add_column(col, overflow="fold")
    for path, (kind, words) in facts.items():
        table.add_row(path, kind, words)
    out.print(table)
    out.print(f"{len(facts)} fact path(s)", markup=False)


def diff_cmd(
    rules: RulesArg = None,
    against: Annotated[
        str, typer.Option("--against", help="Git ref, directory, or ruleset version (X.Y.Z or name@X.Y.Z).")
    ] = "HEAD",
    cohort: Annotated[
        Path, typer.Option("--cohort", help="Folder of bundles (with sidecars) or NDJSON.")
    ] = Path("fhir_samples"),
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="Evaluate everyone as of this date (default: each sample's sidecar, else now)."
        ),
    ] = None,
    include_drafts: Annotated[
        bool,
        typer.Option(
            "--include-drafts/--approved-only", help="Load draft and in-review files too (default)."
        ),
    ] = True,
    output_format: Annotated[str, format_option("text", "json", "html")] = "text",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report here.")] = None,
    examples: Annotated[int, typer.Option("--examples", help="Example patients per group.")] = 3,
) -> None:
    """What changes for real patients if this rule edit ships: findings that appear, vanish or change."""
    from cds.authoring.cohort import load_cohort
    from cds.authoring.impact import as_dict, diff_directories, render_html, render_text

    rules = config.rules_dir(rules)
    patients, rejected = load_cohort(cohort)
    for line in rejected:
        err.print(f"warning: not evaluated: {line}", markup=False)
    if not patients:
        raise _die(f"no patients in {cohort}")
    try:
        instant = config.parse_as_of(as_of) if as_of else None
        report = diff_directories(
            rules, against, patients, statuses=set(_statuses(include_drafts)), as_of=instant
        )
    except RuleDefinitionError as exc:
        raise rule_errors(exc) from exc
    except (ConfigurationError, ValueError) as exc:
        raise _die(str(exc)) from exc
    if output_format == "html":
        text = render_html(report, examples)
    elif output_format == "json":
        text = orjson.dumps(as_dict(report), option=orjson.OPT_INDENT_2).decode()
    else:
        text = render_text(report, examples)
    if output:
        output.write_text(text, encoding="utf-8")
        out.print(
            f"wrote {output}: {len(report.changed_patients)} of {report.patients} patients change",
            markup=False,
        )
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def new_cmd(
    source: Annotated[
        str, typer.Option("--from", help="ruleset:rule-id to copy, e.g. her2-therapy:rec.mbc1.thp")
    ],
    new_id: Annotated[str | None, typer.Option("--id", help="Id (and finding code) of the new rule.")] = None,
    into: Annotated[
        Path | None,
        typer.Option(
            "--into",
            help="Append the rule and its tests to this rule file (bumps its version, sets it to draft).",
        ),
    ] = None,
    rules: RulesOpt = None,
) -> None:
    """Scaffold a rule from an existing one, with test cases derived from its conditions."""
    from cds.authoring import edit

    library = _load(rules, set(WORKING))
    rid = new_id or source.partition(":")[2] + "-local"
    try:
        rule, tests = edit.scaffold(library, source, rid)
    except KeyError as exc:
        raise _die(str(exc.args[0])) from exc
    if into is None:
        sys.stdout.write(
            "rules:\n"
            + "\n".join(edit._item_text(rule))
            + "\ntests:\n"
            + "\n".join(line for t in tests for line in edit._item_text(edit._quoted(t)))
            + "\n"
        )
        return
    try:
        version = edit.insert_rule(into, rule, tests)
    except RuleDefinitionError as exc:
        raise rule_errors(exc) from exc
    except ValueError as exc:
        raise _die(str(exc)) from exc
    out.print(
        f"added rule {rid} with {len(tests)} test case(s) to {into} (now version {version}, status draft)",
        markup=False,
    )


def promote_cmd(
    file: Annotated[Path, typer.Argument(help="A rule file or knowledge file (catalogue/, valuesets/).")],
    to: Annotated[str, typer.Option("--to", help="in-review, approved, retired or draft.")],
    by: Annotated[str | None, typer.Option("--by", help="Reviewer (required to approve).")] = None,
) -> None:
    """Move a ruleset or knowledge file through its lifecycle: draft -> in-review -> approved -> retired."""
    from cds.authoring import edit
    from cds.authoring.review import approval_blockers, write_changelog

    current = str((edit.read(file) or {}).get("status", "approved"))
    moves = edit.lifecycle(file)
    if to not in moves.get(current, ()):
        allowed = ", ".join(moves.get(current, ()))
        raise _die(f"{file.name}: {current} can move to {allowed}, not {to}")
    if to == "approved":
        blockers = approval_blockers(edit.rules_root(file))
        if blockers:
            for line in blockers:
                err.print(line, markup=False)
            errors = sum(b.startswith("lint") for b in blockers)
            raise _die(f"cannot approve: {errors} lint error(s), {len(blockers) - errors} failing test(s)", 1)
    try:
        edit.promote(file, to, by)
    except (ValueError, RuleDefinitionError) as exc:
        raise _die(str(exc)) from exc
    if to == "approved":
        root = edit.rules_root(file)
        write_changelog(root, file.resolve().relative_to(root.resolve()).as_posix())
    out.print(f"{file}: status {to}", markup=False)


def changelog_cmd(
    rules: RulesArg = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Directory for <ruleset>.md (default: print).")
    ] = None,
) -> None:
    """A CHANGELOG per ruleset from git history: versions, dates, authors, what changed."""
    from cds.authoring.changelog import changelogs

    logs = changelogs(config.rules_dir(rules))
    if output is None:
        for text in logs.values():
            sys.stdout.write(text + "\n")
        return
    output.mkdir(parents=True, exist_ok=True)
    for name, text in logs.items():
        (output / f"{name}.md").write_text(text, encoding="utf-8")
    out.print(f"wrote {len(logs)} changelog(s) to {output}", markup=False)


def workbench_cmd(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8765,
    rules: EditableRulesOpt = None,
    cohort: Annotated[Path, typer.Option("--cohort", help="Sample patients.")] = Path("fhir_samples"),
) -> None:
    """Local web rule workbench: browse rules, edit parameters, run a patient, see why and the impact.

    It edits --rules, $CDS_RULES_DIR or ./rules (never the rules bundled with the package)."""
    import uvicorn

    from cds.authoring.workbench import create_app

    try:
        directory = config.editable_rules_dir(rules)
    except FileNotFoundError as exc:
        raise _die(str(exc)) from exc
    if not cohort.exists():
        err.print(f"warning: no sample cohort at {cohort} (pass --cohort DIR); impact views will be empty")
    application = create_app(directory, cohort)
    out.print(f"rule workbench for {directory} on http://{host}:{port}/ (Ctrl-C to stop)", markup=False)
    uvicorn.run(application, host=host, port=port, log_level="warning")


def register(app: typer.Typer, rules_app: typer.Typer) -> None:
    """Attach the authoring commands to the core CLI."""
    rules_app.command("lint")(lint_cmd)
    rules_app.command("ack")(ack_cmd)
    rules_app.command("test")(test_cmd)
    rules_app.command("explain")(explain_cmd)
    rules_app.command("facts")(facts_cmd)
    rules_app.command("diff")(diff_cmd)
    rules_app.command("new")(new_cmd)
    rules_app.command("promote")(promote_cmd)
    rules_app.command("changelog")(changelog_cmd)
    app.command("workbench")(workbench_cmd)
