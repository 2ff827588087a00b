"""Free text read in context: whole words, negation and uncertainty cues, results anywhere in the
string (ER/PR per ASCO/CAP), sex as a word or code. Property tests: a negated or substring variant
of every positive phrase never matches."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds import Evaluator, RuleLibrary
from cds.facts.clinical import read_receptor
from cds.fhir import text
from cds.fhir.valuesets import Codings
from tests.conftest import RULES
from tests.core.test_derivations import UCUM, breast, facts, obs

CUES = text.load_cues(RULES / "valuesets" / "cues.yaml")
SAFETY_CONCEPTS = ("ild", "metastasis", "brain_metastases", "breast_cancer", "other_primary_cancer")


def _concept_phrases(library: RuleLibrary) -> list[tuple[str, str]]:
    return [
        (name, t)
        for name in SAFETY_CONCEPTS
        for t in library.valuesets.concepts[name].text
        if not t.endswith("*")
    ]


# ---- words, never substrings ---------------------------------------------------------------------
def test_male_never_matches_inside_female() -> None:
    assert not text.contains("Female", CUES.words("sex.male"))
    assert text.contains("Adult male", CUES.words("sex.male"))


def test_metastatic_never_matches_inside_another_word(library: RuleLibrary) -> None:
    vs = library.valuesets
    assert vs.match("metastasis", Codings.of("Nonmetastatic carcinoma")) is None
    assert vs.match("metastasis", Codings.of("Premetastatic niche")) is None
    assert vs.match("metastasis", Codings.of("Metastatic carcinoma of breast")) == "text"


def test_case_and_accents_do_not_matter() -> None:
    assert text.tokens("MÉTASTASE Pneumonitis") == ("metastase", "pneumonitis")
    assert text.tokens("ER−") == ("er", "-")  # a Unicode minus is a minus


# ---- negation and uncertainty ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("phrase", "status"),
    [
        ("Interstitial lung disease", "text"),
        ("No evidence of interstitial lung disease", None),
        ("Denies pneumonitis", None),
        ("ILD ruled out on CT", None),
        ("Pneumonitis excluded", None),
        ("Free of pulmonary fibrosis", None),
        ("Negative for pneumonitis", None),
        ("Possible ILD", "uncertain"),
        ("Suspected drug-induced pneumonitis", "uncertain"),
        ("Pneumonitis cannot be excluded", "uncertain"),
        ("? ILD", "uncertain"),
        ("Pneumonitis?", "uncertain"),
        ("History of pneumonitis, resolved", "text"),
        ("No fever; pneumonitis on CT", "text"),  # the negation is in another clause
        ("No change in pulmonary fibrosis", "text"),  # pseudo-negation
        ("Acute respiratory distress syndrome", None),  # ARDS is not ILD
    ],
)
def test_ild_text_is_read_in_context(phrase: str, status: str | None, library: RuleLibrary) -> None:
    assert library.valuesets.match("ild", Codings.of(phrase)) == status


@pytest.mark.parametrize(
    ("phrase", "status"),
    [
        ("Metastatic breast cancer", "text"),
        ("Breast carcinoma metastatic to left axillary lymph nodes", None),
        ("Metastasis to sentinel lymph node", None),
        ("Carcinoma metastatic to internal mammary nodes", None),
        ("Metastatic to supraclavicular node", None),
        ("Metastatic to axillary nodes and liver", "text"),  # a distant site in the same clause
        ("Metastatic to contralateral axillary nodes", "text"),
        ("Axillary nodal metastasis. Bone metastases", "text"),
        ("No evidence of metastatic disease", None),
        ("Non-metastatic breast cancer", None),
        ("Possible bone metastases", "uncertain"),
        ("Liver metastasis cannot be excluded", "uncertain"),
    ],
)
def test_metastasis_text_is_distant_only(phrase: str, status: str | None, library: RuleLibrary) -> None:
    assert library.valuesets.match("metastasis", Codings.of(phrase)) == status


def test_non_negates_only_the_next_word(library: RuleLibrary) -> None:
    assert library.valuesets.match("other_primary_cancer", Codings.of("Non-Hodgkin lymphoma")) == "text"


# ---- property tests ----------------------------------------------------------------------------------
PREFIXES = st.sampled_from(
    ["no", "not", "no evidence of", "without", "negative for", "free of", "absence of", "denies", "ruled out"]
)
SUFFIXES = st.sampled_from(["ruled out", "excluded", "not seen"])
UNCERTAIN = st.sampled_from(["possible", "probable", "suspected", "?"])
FILLER = st.lists(st.sampled_from(["recent", "left", "mild", "known"]), max_size=2).map(" ".join)


@settings(max_examples=200, derandomize=True)
@given(data=st.data())
def test_a_negated_variant_of_every_positive_phrase_never_matches(
    data: st.DataObject, library: RuleLibrary
) -> None:
    name, phrase = data.draw(st.sampled_from(_concept_phrases(library)))
    filler = data.draw(FILLER)
    if data.draw(st.booleans()):
        variant = f"{data.draw(PREFIXES)} {filler} {phrase}"
    else:
        variant = f"{phrase} {filler} {data.draw(SUFFIXES)}"
    assert library.valuesets.match(name, Codings.of(phrase)) in ("text", None)
    assert library.valuesets.match(name, Codings.of(variant)) is None, variant


@settings(max_examples=200, derandomize=True)
@given(data=st.data())
def test_an_uncertain_variant_of_every_positive_phrase_is_never_positive(
    data: st.DataObject, library: RuleLibrary
) -> None:
    name, phrase = data.draw(st.sampled_from(_concept_phrases(library)))
    variant = f"{data.draw(UNCERTAIN)} {phrase}"
    assert library.valuesets.match(name, Codings.of(variant)) in ("uncertain", None), variant


@settings(max_examples=200, derandomize=True)
@given(
    data=st.data(),
    glue=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=4),
)
def test_a_substring_variant_of_every_positive_phrase_never_matches(
    data: st.DataObject, glue: str, library: RuleLibrary
) -> None:
    name, phrase = data.draw(st.sampled_from(_concept_phrases(library)))
    words = phrase.split()
    before = data.draw(st.booleans())
    # glue letters onto the first or last word: the phrase now stands inside another word
    if before:
        words[0] = glue + words[0]
    else:
        words[-1] = words[-1] + glue
    variant = " ".join(words)
    positive = library.valuesets.match(name, Codings.of(variant)) == "text"
    if positive:
        # only acceptable when the glued variant is itself a listed phrase (e.g. "metastases")
        listed = {text.phrase(t) for t in library.valuesets.concepts[name].text}
        toks = text.tokens(variant)
        assert any(text.find(toks, p) for p in listed), variant


@settings(max_examples=100, derandomize=True)
@given(word=st.sampled_from(["female", "females", "woman", "women"]))
def test_a_female_word_never_reads_as_male(word: str) -> None:
    assert not text.contains(word, CUES.words("sex.male"))
    assert text.contains(word, CUES.words("sex.female"))


# ---- ER / PR written as text -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "receptor", "expected"),
    [
        ("ER: POSITIVE (95%, strong)", "er", ("positive", False)),
        ("ER low positive (1–10%)", "er", ("positive", True)),
        ("Estrogen receptor negative (<1%)", "er", ("negative", False)),
        ("ER+/PR−", "er", ("positive", False)),
        ("ER+/PR−", "pr", ("negative", False)),
        ("95 % of nuclei stained", "er", ("positive", False)),
        ("10%", "er", ("positive", True)),  # 10 % is still ER-low (boundary)
        ("11%", "er", ("positive", False)),
        ("1%", "er", ("positive", True)),  # 1 % is positive, ER-low (boundary)
        ("0.5%", "er", ("negative", False)),
        ("<1%", "pr", ("negative", False)),
        ("ER positive (<1%)", "er", (None, True)),  # contradiction: not known
        ("Progesterone receptor: not detected", "pr", (None, False)),
        ("PR positive, 5% of tumour nuclei, weak intensity", "pr", ("positive", False)),  # no PgR-low
        ("5%", "pr", ("positive", False)),
    ],
)
def test_receptor_results_are_read_wherever_they_stand(
    value: str, receptor: str, expected: tuple[str | None, bool]
) -> None:
    assert read_receptor(value, receptor, CUES) == expected


def _hr(evaluator: Evaluator, *results: dict[str, Any]) -> Any:
    return facts(evaluator, breast(), *results)


def test_er_positive_written_after_a_label_is_hr_positive(evaluator: Evaluator) -> None:
    f = _hr(evaluator, obs("er", "85337-4", "2026-01-01", valueString="ER: POSITIVE (95%, strong)"))
    assert (f.hr_status, f.review.hr_low_positive) == ("positive", False)


def test_er_low_positive_is_positive_with_review(evaluator: Evaluator) -> None:
    f = _hr(
        evaluator,
        obs("er", "85337-4", "2026-01-01", valueString="ER low positive (1–10%)"),
        obs("pr", "85339-0", "2026-01-01", valueString="PR negative (<1%)"),
    )
    assert (f.hr_status, f.review.hr_low_positive) == ("positive", True)


def test_er_and_pr_negative_in_words_is_hr_negative(evaluator: Evaluator) -> None:
    f = _hr(
        evaluator,
        obs("er", "85337-4", "2026-01-01", valueString="Estrogen receptor negative (<1%)"),
        obs("pr", "85339-0", "2026-01-01", valueCodeableConcept={"text": "Progesterone receptor negative"}),
    )
    assert f.hr_status == "negative"


def test_er_percentage_quantity_follows_asco_cap(evaluator: Evaluator) -> None:
    f = _hr(evaluator, obs("er", "85337-4", "2026-01-01", valueQuantity={"value": 5, "unit": "%"}))
    assert (f.hr_status, f.review.hr_low_positive) == ("positive", True)


# ---- sex of a reference range ---------------------------------------------------------------------
def _alt_with_ranges(gender: str, *ranges: dict[str, Any]) -> Any:
    return {
        "valueQuantity": {"value": 80, "unit": "U/L", "system": UCUM, "code": "U/L"},
        "referenceRange": list(ranges),
    }


MALE_RANGE = {"high": {"value": 50}, "appliesTo": [{"text": "Male"}]}
FEMALE_RANGE = {"high": {"value": 40}, "appliesTo": [{"text": "Female"}]}
FEMALE_CODED = {
    "high": {"value": 40},
    "appliesTo": [{"coding": [{"system": "http://snomed.info/sct", "code": "248152002"}]}],
}
MALE_CODED = {
    "high": {"value": 50},
    "appliesTo": [{"coding": [{"system": "http://snomed.info/sct", "code": "248153007"}]}],
}


@pytest.mark.parametrize(
    ("gender", "ranges", "x_uln"),
    [
        ("male", [FEMALE_RANGE, MALE_RANGE], 1.6),  # "male" is not found inside "female"
        ("female", [MALE_RANGE, FEMALE_RANGE], 2.0),
        ("male", [FEMALE_CODED, MALE_CODED], 1.6),
        ("female", [MALE_CODED, FEMALE_CODED], 2.0),
        ("male", [FEMALE_RANGE, {"high": {"value": 45}}], round(80 / 45, 4)),  # none matching: general
    ],
)
def test_reference_range_is_chosen_by_sex_as_word_or_code(
    gender: str, ranges: list[dict[str, Any]], x_uln: float, evaluator: Evaluator, library: RuleLibrary
) -> None:
    from cds import parse_as_of, raw_patient_from_resources
    from tests.core.test_derivations import patient

    resources = [
        patient(gender=gender),
        breast(),
        obs("alt", "1742-6", "2026-10-30", **_alt_with_ranges(gender, *ranges)),
    ]
    f = evaluator.evaluate(raw_patient_from_resources(resources, "t"), as_of=parse_as_of("2026-11-01")).facts
    assert f.labs.alt.x_uln == x_uln


# ---- HER2 IHC read as a whole -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "score", "ultralow", "contradictory"),
    [
        ("0", "0", False, False),
        ("0+", "0", False, False),
        ("IHC 0 (ultralow)", "0", True, False),
        ("Score 0: faint, incomplete membrane staining in ≤10% of tumour cells", "0", True, False),
        ("0+ with barely perceptible membrane staining in 5% of cells", "0", True, False),
        ("HER2 IHC 0 (null): no staining", "0", False, False),
        ("Absent membrane staining", "0", False, False),
        ("No membrane staining observed", "0", False, False),
        ("HER2-ultralow", "0", True, False),
        ("1+ (faint incomplete staining in >10% of cells)", "1+", False, False),
        ("Score 2+ (equivocal)", "2+", False, False),
        ("3+", "3+", False, False),
        ("0 (null), faint incomplete staining in <10%", None, False, True),
        ("2+ on block A, 3+ on block B", None, False, True),
        ("IHC 0-1+", None, False, True),
        ("HER2 IHC 3+ (positive). Addendum: score 0, no membrane staining", None, False, True),
        ("Score 0.", "0", False, False),
        ("No faint staining; 0", "0", False, False),  # the staining is negated
        ("Negative", None, False, False),
        ("membrane staining in 0% of cells", None, False, False),
    ],
)
def test_her2_ihc_text_is_read_as_a_whole(
    value: str, score: str | None, ultralow: bool, contradictory: bool
) -> None:
    from cds.facts.her2 import read_ihc

    assert read_ihc(value, CUES) == read_ihc(value.upper(), CUES)
    reading = read_ihc(value, CUES)
    assert (reading.score, reading.ultralow, reading.contradictory) == (score, ultralow, contradictory)


def _ihc(evaluator: Evaluator, value: str) -> Any:
    return facts(
        evaluator, breast(), obs("ihc", "85319-2", "2026-01-01", valueCodeableConcept={"text": value})
    )


def test_zero_with_faint_membrane_staining_is_ultralow(evaluator: Evaluator) -> None:
    assert (
        _ihc(evaluator, "0 - faint incomplete membrane staining in 5% of cells").her2.category == "ultralow"
    )


def test_zero_null_is_zero(evaluator: Evaluator) -> None:
    assert _ihc(evaluator, "0 (null)").her2.category == "zero"


def test_a_result_that_contradicts_itself_is_a_her2_gap(evaluator: Evaluator) -> None:
    f = _ihc(evaluator, "0 (null), faint incomplete staining in <10%")
    assert (f.her2.category, f.her2.contradictory) == ("unknown", True)
