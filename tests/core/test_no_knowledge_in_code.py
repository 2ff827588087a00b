"""Clinical knowledge lives in reviewed data under ``rules/``, never in Python: no string literal in
``cds/`` (docstrings aside) equals or contains, as a whole word, a drug, product or brand name, an
agent id or an RxNorm code of the drug catalogue — nor a unit spelling or text cue word of the
value sets, once those lists exist as data."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from cds.knowledge.catalogue import load_catalogue, normalise
from tests.conftest import ROOT

PKG = ROOT / "cds"
RULES = ROOT / "rules"

# Data files that other work moves into rules/ (text cue words, unit spellings). Each entry names a
# file and how to read the words to ban from it; a file that does not exist yet is skipped, so the
# words are covered as soon as the file is merged. Extend here when a new knowledge file appears.
EXTRA_WORD_SOURCES: tuple[tuple[str, str], ...] = (
    ("valuesets/cues.yaml", "values"),
    ("valuesets/units.yaml", "all-keys"),
)


# Cue values that are also the engine's own vocabulary, not text-reading knowledge: result
# categories and fact values (positive, negative, ultralow), FHIR administrative-gender codes
# (female, male), concept ids (breast, leptomeningeal), and plain English of messages (not, non,
# but, before, after, never, without, null, excluded, query: words of the service's own messages and
# URL checks). Every other cue word or phrase stays banned.
SHARED_VOCABULARY = frozenset(
    {"positive", "negative", "ultralow", "female", "male", "breast", "leptomeningeal",
     "not", "non", "but", "before", "after", "never", "without", "null", "sentinel",
     "excluded", "query"}
)
# The cohort synthesiser writes FHIR records (code displays such as "Secondary malignant neoplasm of
# liver"); it reads no text, so cue words are not checked there (drug names and codes still are).
CUE_WORDS_NOT_CHECKED = frozenset({"cds/cohort/synth.py"})


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that are docstrings (first statement of a module, class or def)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def string_literals(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of every string literal of a module except its docstrings (f-string parts too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _docstring_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.lineno, node.value


def _sorted_by_line(found: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return sorted(found)


def _strings(data: object, how: str) -> Iterator[str]:
    """Keys ("all-keys"), string values ("values": the cue words, not the section names the code
    reads them by) or both ("all-strings") of a YAML tree."""
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and how != "values":
                yield key
            if key != "version":
                yield from _strings(value, how)
    elif isinstance(data, list):
        for value in data:
            yield from _strings(value, how)
    elif isinstance(data, str) and how != "all-keys":
        yield data


def extra_words(rules: Path = RULES) -> set[str]:
    """Cue words and unit spellings from the data files that exist (see EXTRA_WORD_SOURCES)."""
    words: set[str] = set()
    for name, how in EXTRA_WORD_SOURCES:
        path = rules / name
        if not path.exists():
            continue
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for text in _strings(data, how):
            if len(text) >= 3 and not text.startswith(("http", "version")):
                words.add(normalise(text))
    return words - SHARED_VOCABULARY


def banned_terms(rules: Path = RULES, cue_words: bool = True) -> set[str]:
    """Every name, id and code of the drug catalogue (normalised), plus the extra data words."""
    catalogue = load_catalogue(rules / "catalogue")
    terms = set(catalogue.all_names())
    terms.update(catalogue.items)  # agent and product ids
    terms.update(catalogue.rxnorm_codes())
    terms.update(k.replace("_", "-") for k in catalogue.items)
    if cue_words:
        terms |= extra_words(rules)
    return {t for t in terms if t}


def _pattern(terms: set[str]) -> re.Pattern[str]:
    ordered = sorted(terms, key=len, reverse=True)
    # a finding or rule code ("rec.mbc2.<agent>") is a rule identifier, not drug knowledge: a term
    # right after a "." is not a mention
    return re.compile(r"(?<![a-z0-9_.])(?:" + "|".join(re.escape(t) for t in ordered) + r")(?![a-z0-9_])")


def offending_literals(package: Path = PKG, rules: Path = RULES) -> list[str]:
    """``file:line: 'literal' names 'term'`` for every literal that holds knowledge."""
    pattern = _pattern(banned_terms(rules))
    drugs_only = _pattern(banned_terms(rules, cue_words=False))
    found: list[str] = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).as_posix()
        check = drugs_only if rel in CUE_WORDS_NOT_CHECKED else pattern
        for line, text in _sorted_by_line(list(string_literals(path))):
            hit = check.search(normalise(text))
            if hit:
                where = f"{path.relative_to(package.parent)}:{line}"
                found.append(f"{where}: {text[:60]!r} names {hit.group(0)!r}")
    return found


def test_no_drug_name_code_or_agent_id_is_a_string_literal_in_cds() -> None:
    assert offending_literals() == []


def test_the_walker_finds_a_drug_name_and_ignores_docstrings(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text(
        '"""Mentions Kadcyla in a docstring: allowed."""\n'
        "def f() -> str:\n"
        '    """T-DXd in a docstring is fine."""\n'
        '    return "give Enhertu now"\n'
        'CODE = "1371041"\n'
        'SAFE = "trastuzumabish"\n',
        encoding="utf-8",
    )
    found = sorted(offending_literals(package))
    assert [f.split(": ", 1)[0] for f in found] == ["pkg/mod.py:4", "pkg/mod.py:5"]
    assert "'enhertu'" in found[0] and "'1371041'" in found[1]
