"""HER2 status: test episodes, ISH groups and the category (clinical-spec §2, KB §2).

Results are grouped into episodes (shared specimen, else IHC/ISH within ``her2_episode_days``);
an IHC 2+ takes the ISH of its episode; the latest episode wins; an earlier positive episode
keeps the category positive and marks the status discordant for review.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cds.facts.model import Her2Facts
from cds.facts.params import Params
from cds.fhir import text as textmod
from cds.fhir.records import ObservationRecord
from cds.fhir.text import Cues
from cds.fhir.valuesets import ValueSets

HER2_KINDS = ("her2_ihc", "her2_interpretation", "her2_ish", "her2_ish_ratio", "her2_ish_copies")
_SCORES = ("0", "1", "2", "3")
_NOT_A_BARE_ZERO = ("%", "/")  # "0 %" is a proportion, "0/8" an Allred score; decimals are one token


@dataclass(frozen=True)
class IhcReading:
    """What one IHC result text says: the score, membrane staining present (ultralow), and whether
    the text contradicts itself (two scores, or staining both present and absent)."""

    score: str | None
    ultralow: bool = False
    contradictory: bool = False


def read_ihc(text: str, cues: Cues) -> IhcReading:
    """Read an IHC result as a whole (ASCO/CAP; DESTINY-Breast06 "ultralow").

    Scores are "N+" or a bare "0"; membrane staining described as present (faint, incomplete,
    barely perceptible, <=10 % of cells, "ultralow") makes an IHC 0 ultralow even when "0"/"0+" is
    written; "0 (null)", "no staining", "absent membrane staining" make it zero."""
    toks = textmod.tokens(text)
    scores: set[str] = set()
    for i, tok in enumerate(toks):
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        if tok in _SCORES and nxt == "+":
            scores.add("0" if tok == "0" else f"{tok}+")
        elif tok == "0" and nxt == "-" and i + 2 < len(toks) and toks[i + 2] in _SCORES:
            scores.add("0")  # "0-1+": a range of scores is not one score
        elif tok == "0" and nxt not in _NOT_A_BARE_ZERO and not (i and toks[i - 1] in ("-", "/")):
            scores.add("0")
    present = textmod.mention_status(text, cues.words("her2_ihc.membrane_present"), cues) == "positive"
    absent = textmod.mention_status(text, cues.words("her2_ihc.absent"), cues) == "positive"
    if len(scores) > 1:
        return IhcReading(None, contradictory=True)
    score = next(iter(scores), None)
    if score in ("1+", "2+", "3+"):
        return IhcReading(score)  # faint/incomplete also describe 1+: the written score decides
    if present and absent:
        return IhcReading(None, contradictory=True)
    explicit = textmod.contains(text, cues.words("her2_ihc.ultralow"))
    if score == "0" or absent or explicit:
        return IhcReading("0", ultralow=present)
    return IhcReading(None)


def ihc_score(texts: tuple[str, ...], cues: Cues) -> tuple[str | None, bool]:
    """The IHC score written in a result ("2+", "Score 1+", "0", "IHC 0 ultralow") and ultralow."""
    for text in texts:
        reading = read_ihc(text, cues)
        if reading.score is not None:
            return reading.score, reading.ultralow
    return None, False


@dataclass
class _Episode:
    results: list[ObservationRecord] = field(default_factory=list)
    specimen: str | None = None

    @property
    def start(self) -> datetime:
        return min(r.when.instant for r in self.results)

    @property
    def latest(self) -> datetime:
        return max(r.when.instant for r in self.results)


@dataclass
class _Call:
    category: str
    ihc: str | None = None
    group: int | None = None
    ish: str = "none"
    ish_required: bool = False
    ish_review: bool = False
    contradictory: bool = False
    refs: list[str] = field(default_factory=list)


def ish_group(ratio: float, copies: float, params: Params) -> int:
    """ASCO/CAP 2018 dual-probe group from HER2/CEP17 ratio and HER2 copies per cell."""
    cutoff = params.num("ish_ratio_cutoff")
    low, high = params.num("ish_copies_low"), params.num("ish_copies_high")
    if ratio >= cutoff:
        return 1 if copies >= low else 2
    if copies >= high:
        return 3
    if copies >= low:
        return 4
    return 5


def _episodes(results: list[ObservationRecord], days: int) -> list[_Episode]:
    episodes: list[_Episode] = []
    for result in sorted(results, key=lambda r: (r.when.instant, r.ref)):
        home: _Episode | None = None
        if result.specimen:
            home = next((e for e in episodes if e.specimen == result.specimen), None)
        if home is None:
            for episode in reversed(episodes):
                if result.specimen and episode.specimen and episode.specimen != result.specimen:
                    continue
                if abs((result.when.instant - episode.start).days) <= days:
                    home = episode
                    break
        if home is None:
            home = _Episode(specimen=result.specimen)
            episodes.append(home)
        home.results.append(result)
        if result.specimen and home.specimen is None:
            home.specimen = result.specimen
    return episodes


def _call(episode: _Episode, vs: ValueSets, params: Params) -> _Call:
    scores: dict[str, bool] = {}  # score -> ultralow stated
    interp: set[str] = set()
    ish_calls: set[str] = set()
    ratio = copies = None
    refs: list[str] = []
    call_contradictory = False
    for r in sorted(episode.results, key=lambda x: (x.when.instant, x.ref)):
        refs.append(r.ref)
        texts = r.answer.texts if r.answer else ()
        if r.kind in ("her2_ihc", "her2_interpretation"):
            readings = [read_ihc(t, vs.cues) for t in texts]
            if any(x.contradictory for x in readings):
                call_contradictory = True
                continue
            reading = next((x for x in readings if x.score is not None), IhcReading(None))
            score, ultralow = reading.score, reading.ultralow
            if score is not None:
                scores[score] = scores.get(score, False) or ultralow
            elif r.answer and vs.answer_is("positive", r.answer):
                interp.add("positive")
            elif r.answer and vs.answer_is("negative", r.answer):
                interp.add("negative")
        elif r.kind == "her2_ish":
            if r.answer and vs.answer_is("positive", r.answer):
                ish_calls.add("positive")
            elif r.answer and vs.answer_is("negative", r.answer):
                ish_calls.add("negative")
            elif r.answer or r.ratio is not None:
                ish_calls.add("indeterminate")
        elif r.kind == "her2_ish_ratio" and r.ratio is not None:
            ratio = r.ratio
        elif r.kind == "her2_ish_copies" and r.ratio is not None:
            copies = r.ratio
    group = ish_group(ratio, copies, params) if ratio is not None and copies is not None else None
    if group is not None:
        ish_calls.discard("indeterminate")
        ish_calls.add({1: "positive", 5: "negative"}.get(group, "group"))
    elif ratio is not None:
        ish_calls.add("indeterminate")
    call = _Call(category="unknown", group=group, refs=refs)
    if (
        call_contradictory
        or len(scores) > 1
        or ({"positive", "negative"} <= ish_calls)
        or ({"positive", "negative"} <= interp)
    ):
        call.contradictory = True
        return call
    ihc = next(iter(scores), None)
    call.ihc = ihc
    ish = "none"
    if ish_calls - {"indeterminate"}:
        ish = next(iter(sorted(ish_calls - {"indeterminate"})))
    elif ish_calls:
        ish = "indeterminate"
    call.ish = "indeterminate" if ish == "group" else ish
    if (ihc in ("0", "1+") and "positive" in interp) or (ihc == "3+" and "negative" in interp):
        call.contradictory = True
        return call
    if ish == "positive" or ihc == "3+":
        call.category = "positive"
    elif ish == "group" or ish == "indeterminate":
        if ihc == "0":
            call.category = "ultralow" if scores["0"] else "zero"
        elif ihc == "1+":
            call.category = "low"
        elif ihc is None and "negative" in interp:
            # an IHC read as negative (0/1+) with ISH group 2-4 or indeterminate stays negative;
            # gap.her2-ihc-score asks for the score where HER2-low matters (metastatic)
            call.category = "negative"
        elif ihc is None and "positive" in interp:
            call.category = "positive"
        else:
            call.ish_review = True
    elif ihc == "2+":
        if ish == "negative":
            call.category = "low"
        else:
            call.category = "equivocal"
            call.ish_required = True
    elif ihc == "1+":
        call.category = "low"
    elif ihc == "0":
        call.category = "ultralow" if scores["0"] else "zero"
    elif "positive" in interp:
        call.category = "positive"
    elif "negative" in interp or ish == "negative":
        call.category = "negative"
    return call


def derive_her2(
    observations: list[ObservationRecord], vs: ValueSets, params: Params, provenance: dict[str, list[str]]
) -> Her2Facts:
    """HER2 facts from all HER2 results up to as-of (already filtered by the caller)."""
    results = [o for o in observations if o.kind in HER2_KINDS]
    if not results:
        return Her2Facts()
    episodes = _episodes(results, params.days("her2_episode_days"))
    calls = [_call(e, vs, params) for e in episodes]
    latest, latest_episode = calls[-1], episodes[-1]
    facts = Her2Facts(
        category=latest.category,
        ihc_score=latest.ihc,
        ish_group=latest.group,
        ish_result=latest.ish,
        ish_required=latest.ish_required,
        ish_review=latest.ish_review,
        contradictory=latest.contradictory,
        tested=True,
        episode_date=latest_episode.latest.date().isoformat(),
    )
    refs = list(latest.refs)
    earlier_positive = [c for c in calls[:-1] if c.category == "positive"]
    if earlier_positive and latest.category != "positive":
        facts.discordant = True
        facts.category = "positive"
        refs = earlier_positive[-1].refs + refs
    provenance["her2"] = refs
    return facts
