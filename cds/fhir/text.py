"""Free text read in context: whole words, negation and uncertainty cues, clauses.

Every derivation that reads text (condition names, result strings, reference-range sexes) goes
through here, so "male" never matches inside "female", "no evidence of metastatic disease" is not
metastatic disease and "possible ILD" is not ILD (it is a reason for review). Cue words are data
(``rules/valuesets/cues.yaml``); this module only knows how to apply them (NegEx-style: a cue acts
on a mention in the same clause, within a few words before or after it).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from cds.errors import ConfigurationError
from cds.knowledge.provenance import knowledge_status

Phrase = tuple[str, ...]
Status = Literal["positive", "uncertain", "negated"]

_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"), "-")
_TOKEN = re.compile(r"\d+(?:[.,]\d+)?|[a-z0-9]+|[^\sa-z0-9]")


@lru_cache(maxsize=65536)
def normalize(text: str) -> str:
    """Lower-case, accents removed, every dash and minus sign read as "-"."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_DASHES))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


@lru_cache(maxsize=65536)
def tokens(text: str) -> Phrase:
    """Words, numbers (with their decimals) and single symbols of a text."""
    return tuple(_TOKEN.findall(normalize(text)))


def phrase(text: str) -> Phrase:
    """A phrase as the token sequence it must match (a trailing ``*`` is a word prefix)."""
    star = text.rstrip().endswith("*")
    toks = tokens(text.rstrip().rstrip("*"))
    if star and toks:
        return (*toks[:-1], toks[-1] + "*")
    return toks


def _word_matches(pattern: str, token: str) -> bool:
    if pattern.endswith("*") and len(pattern) > 1:
        return token.startswith(pattern[:-1])
    return pattern == token


def find(toks: Phrase, pattern: Phrase) -> list[int]:
    """Start indices where ``pattern`` occurs in ``toks`` as whole words."""
    n = len(pattern)
    if not n or n > len(toks):
        return []
    return [
        i
        for i in range(len(toks) - n + 1)
        if all(_word_matches(p, t) for p, t in zip(pattern, toks[i : i + n], strict=True))
    ]


def contains(text: str, phrases: Iterable[Phrase]) -> bool:
    """Whether any phrase occurs in the text as whole words (no cue reading)."""
    toks = tokens(text)
    return any(find(toks, p) for p in phrases)


@dataclass(frozen=True, eq=False)
class Cues:
    """The cue lists of ``cues.yaml``, as phrases."""

    breaks: tuple[Phrase, ...]
    window: int
    neg_before: tuple[Phrase, ...]
    neg_after: tuple[Phrase, ...]
    neg_prefix: tuple[Phrase, ...]
    pseudo: tuple[Phrase, ...]
    unc_before: tuple[Phrase, ...]
    unc_after: tuple[Phrase, ...]
    lists: Mapping[str, tuple[Phrase, ...]] = field(default_factory=dict)
    numbers: Mapping[str, float] = field(default_factory=dict)
    version: str = ""
    status: str = "approved"

    def words(self, name: str) -> tuple[Phrase, ...]:
        """A named phrase list of the cue file, e.g. ``regional_nodes.sites``."""
        return self.lists.get(name, ())


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    roles: frozenset[str]


@dataclass(frozen=True)
class Reading:
    """A tokenized text with its cue spans located once."""

    toks: Phrase
    spans: tuple[_Span, ...]
    cues: Cues

    def clause(self, start: int, end: int) -> tuple[int, int]:
        """Token bounds of the clause holding tokens [start, end)."""
        lo, hi = 0, len(self.toks)
        for s in self.spans:
            if "break" in s.roles:
                if s.end <= start:
                    lo = max(lo, s.end)
                elif s.start >= end:
                    hi = min(hi, s.start)
        return lo, hi

    def status(self, start: int, end: int) -> Status:
        """How the mention at tokens [start, end) is stated: positive, negated or uncertain."""
        lo, hi = self.clause(start, end)
        window = self.cues.window
        negated = uncertain = False
        for s in self.spans:
            if s.end <= start and s.start >= lo and start - s.end <= window:
                negated |= "neg_before" in s.roles
                uncertain |= "unc_before" in s.roles
                if "neg_prefix" in s.roles and all(t == "-" for t in self.toks[s.end : start]):
                    negated = True
            elif s.start >= end and s.end <= hi and s.start - end <= window:
                negated |= "neg_after" in s.roles
                uncertain |= "unc_after" in s.roles
        if uncertain:
            return "uncertain"  # "? ruled out" or "not excluded": never a confident negative
        return "negated" if negated else "positive"

    def clause_has(self, start: int, end: int, phrases: Iterable[Phrase]) -> bool:
        """Whether the clause of a mention names any of the phrases (outside the mention)."""
        lo, hi = self.clause(start, end)
        for p in phrases:
            for i in find(self.toks[lo:hi], p):
                if lo + i + len(p) <= start or lo + i >= end:
                    return True
        return False

    def mentions(self, phrases: Iterable[Phrase]) -> list[tuple[int, int]]:
        """Every occurrence of any phrase; a shorter one inside a longer one is the same mention."""
        found = sorted(
            {(i, i + len(p)) for p in phrases for i in find(self.toks, p)}, key=lambda m: (m[0], -m[1])
        )
        out: list[tuple[int, int]] = []
        for m in found:
            if out and m[0] < out[-1][1]:
                continue
            out.append(m)
        return out


def read(text: str, cues: Cues) -> Reading:
    """Locate the cue spans of a text (longest cue wins where cues overlap)."""
    return _read(text, cues)


@lru_cache(maxsize=32768)
def _read(text: str, cues: Cues) -> Reading:
    toks = tokens(text)
    roles: dict[tuple[int, int], set[str]] = {}
    for role, plist in (
        ("break", cues.breaks),
        ("neg_before", cues.neg_before),
        ("neg_after", cues.neg_after),
        ("neg_prefix", cues.neg_prefix),
        ("pseudo", cues.pseudo),
        ("unc_before", cues.unc_before),
        ("unc_after", cues.unc_after),
    ):
        for p in plist:
            for i in find(toks, p):
                roles.setdefault((i, i + len(p)), set()).add(role)
    chosen: list[_Span] = []
    for (start, end), r in sorted(roles.items(), key=lambda kv: (kv[0][0], -(kv[0][1] - kv[0][0]))):
        if chosen and start < chosen[-1].end:
            continue
        chosen.append(_Span(start, end, frozenset(r)))
    return Reading(toks, tuple(chosen), cues)


def mention_status(
    text: str,
    phrases: Iterable[Phrase],
    cues: Cues,
    *,
    unless_clause_has: tuple[Phrase, ...] = (),
    unless_also: tuple[Phrase, ...] = (),
) -> Status | None:
    """The strongest statement of any phrase in the text: positive over uncertain over negated.

    A mention whose clause names one of ``unless_clause_has`` (and none of ``unless_also``) is
    not a mention at all (e.g. "metastatic to axillary nodes" is not distant metastasis).
    """
    reading = read(text, cues)
    best: Status | None = None
    rank = {"negated": 0, "uncertain": 1, "positive": 2}
    for start, end in reading.mentions(phrases):
        if (
            unless_clause_has
            and reading.clause_has(start, end, unless_clause_has)
            and not reading.clause_has(start, end, unless_also)
        ):
            continue
        status = reading.status(start, end)
        if best is None or rank[status] > rank[best]:
            best = status
    return best


def _phrases(value: Any, where: str) -> tuple[Phrase, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"cues.yaml {where}: expected a list of quoted strings")
    return tuple(p for p in (phrase(v) for v in value) if p)


def load_cues(path: Path) -> Cues:
    """Read ``cues.yaml``: cue lists become phrases; other lists are kept by dotted name."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read cue file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"cue file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"cue file {path} must be a mapping")
    lists: dict[str, tuple[Phrase, ...]] = {}
    numbers: dict[str, float] = {}

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, name + ".")
            elif isinstance(value, list):
                lists[name] = _phrases(value, name)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                numbers[name] = float(value)

    walk(data, "")
    window = data.get("window_words", 6)
    if not isinstance(window, int) or window < 1:
        raise ConfigurationError("cues.yaml window_words must be a positive integer")
    return Cues(
        breaks=lists.get("clause_breaks", ()),
        window=window,
        neg_before=lists.get("negation.before", ()),
        neg_after=lists.get("negation.after", ()),
        neg_prefix=lists.get("negation.prefix", ()),
        pseudo=lists.get("negation.pseudo", ()),
        unc_before=lists.get("uncertainty.before", ()),
        unc_after=lists.get("uncertainty.after", ()),
        lists=lists,
        numbers=numbers,
        version=str(data.get("version", "")),
        status=knowledge_status(data, "cues.yaml"),
    )
