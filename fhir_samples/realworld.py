#!/usr/bin/env python3
"""Generate the realistic-variation corpus (``fhir_samples/rw-*``) of the HER2 CDS engine.

The scenarios of ``generate.py`` record every fact the way the rules were written for.  These
patients record the same facts the way real EHRs and feeds do: free text instead of codes, results
read in the middle of a sentence, negated and uncertain mentions, a second primary cancer, therapy
known only from a MedicationStatement, a dispense or per-cycle orders, brand, biosimilar and
clinical-drug names, codes outside the value sets, local units, fractions, sex-specific reference
ranges, versioned / absolute / urn patient references, another patient's results inside the file,
and entries that cannot be read at all.  Each patient changes one way of recording one fact of an
otherwise complete chart, so that it shows only the finding that fact drives.

The sidecars (``rw-<name>.expected.yaml``) are written from the clinical specification (version
2, whose real-world amendments win), never from what an engine prints.  Besides ``findings`` a
sidecar may list ``skipped``: the ids of the resources that must be left out of the evaluation and
listed in its ``skipped`` part (another patient's data, unreadable entries).

Stdlib only, deterministic: running it twice gives byte-identical files.  It reuses the chart
builders of ``generate.py`` (imported, not copied) and writes only ``rw-*`` files.

Usage:  python3 fhir_samples/realworld.py
"""

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import generate as g
from generate import (
    ICD10,
    LOINC,
    MBC1,
    MBC2,
    ON_THERAPY,
    RXNORM,
    SNOMED,
    UCUM,
    Case,
    alert,
    at,
    coding,
    concept,
    every,
    only,
    quantity,
    rec,
)

OUT_DIR = g.OUT_DIR
ORDER_DIR = g.ORDER_DIR
PREFIX = "rw-"
LOCAL_DX = "https://ehr.example.org/fhir/CodeSystem/problem-list"
MCODE_RELATED_PRIMARY = ("http://hl7.org/fhir/us/mcode/StructureDefinition/"
                         "mcode-related-primary-cancer-condition")
OTHER_PATIENT = "rw-other-patient-7"

# Medication names as written in real records (text only, no code), keyed for g.med_concept.
g.DRUGS.update({
    "ado-trastuzumab": (None, None, "ado-trastuzumab 3.6 mg/kg in NS 250 mL IV"),
    "fam-trastuzumab": (None, None, "FAM-TRASTUZUMAB 5.4 MG/KG IN D5W 100 ML"),
    "ogivri": (None, None, "Ogivri 420 mg vial"),
    "kanjinti": (None, None, "Kanjinti"),
    "trastuzumab-anns": (None, None, "trastuzumab-anns 420 mg IV"),
    "phesgo-scd": (None, None, "hyaluronidase-zzxf / pertuzumab / trastuzumab"),
    "enhertu-text": (None, None, "Enhertu"),
    "letrozole-text": (None, None, "letrozole 2.5 mg tablet"),
})


class RwCase(Case):
    """A Case with the resource ids that must be skipped and an optional bundle rewrite."""

    def __init__(self, chart, title, findings, notes, order=None, skipped=(), bundle_hook=None,
                 varies=""):
        super().__init__(chart, title, findings, notes, order)
        self.skipped = list(skipped)
        self.bundle_hook = bundle_hook
        self.varies = varies


SCENARIOS = []


def scenario(fn):
    SCENARIOS.append(fn)
    return fn


# ---------------------------------------------------------------------------------------------
# Small editing helpers: find a resource a template wrote and change how a fact is recorded
# ---------------------------------------------------------------------------------------------


def res(c, ref):
    """The resource dict behind a reference returned by Chart.add."""
    rtype, rid = ref["reference"].split("/", 1)
    return next(r for r in c.resources if r["resourceType"] == rtype and r["id"] == rid)


def by_code(c, rtype, code):
    """Resources of `rtype` whose code holds `code` (in chart order)."""
    return [r for r in c.resources if r["resourceType"] == rtype
            and any(cd.get("code") == code for cd in (r.get("code") or {}).get("coding", []))]


def latest(c, rtype, code):
    return by_code(c, rtype, code)[-1]


def set_value(obs, value):
    """Replace the value[x] of an Observation by `value` (a dict with one value[x] key)."""
    for key in [k for k in obs if k.startswith("value")]:
        del obs[key]
    obs.update(value)


def remove(c, resource):
    c.resources.remove(resource)


def add_condition(c, code, onset, system=ICD10, display=None, text=None, status="active",
                  abatement=None, extension=None):
    """A Condition with any code (or text only when code is None)."""
    cc = {"coding": [coding(system, code, display)]} if code else {}
    if text:
        cc["text"] = text
    body = {}
    if extension:
        body["extension"] = extension
    body.update({
        "clinicalStatus": concept(g.COND_CLINICAL, status, status.capitalize()),
        "verificationStatus": concept(g.COND_VERIFICATION, "confirmed", "Confirmed"),
        "category": [concept(g.COND_CATEGORY, "problem-list-item", None)],
        "code": cc,
        "subject": c.ref,
        "onsetDateTime": onset,
        "recordedDate": onset,
    })
    if abatement:
        body["abatementDateTime"] = abatement
    return c.add("Condition", "cond", body)


def add_obs(c, loinc, display, date, value, time="08:00:00", category="laboratory", extra=None):
    body = {"status": "final",
            "category": [concept(g.OBS_CATEGORY, category, None)],
            "code": concept(LOINC, loinc, display),
            "subject": c.ref,
            "effectiveDateTime": at(date, time)}
    body.update(value)
    if extra:
        body.update(extra)
    return c.add("Observation", "obs", body)


def platelets_raw(c, date, value, unit, time="08:00:00", subject=None):
    ref = add_obs(c, "777-3", "Platelets [#/volume] in Blood by Automated count", date,
                  {"valueQuantity": quantity(value, unit, ucum=False)}, time,
                  extra={"referenceRange": [{"low": quantity(150, unit, ucum=False),
                                             "high": quantity(400, unit, ucum=False)}]})
    if subject:
        res(c, ref)["subject"] = {"reference": subject}
    return ref


NO_FRESH_PLT = {"plt": None}


def mbc_tdm1(name, fresh=None, **kw):
    """generate.mbc_on_second_line: HER2+ MBC on second-line T-DM1 (Kadcyla) 3.6 mg/kg, stable."""
    return g.mbc_on_second_line(name, fresh=fresh, **kw)


def mbc_tdxd(name, fresh=None, drug="tdxd", **kw):
    """generate.mbc_on_second_line with T-DXd 5.4 mg/kg (Enhertu coded unless `drug` says)."""
    return g.mbc_on_second_line(name, drug=drug, dose=5.4, fresh=fresh, **kw)


def ultralow_hr(name, er_value, pr_value, her2="0 with faint incomplete membrane staining (ultralow)"):
    """HER2-ultralow MBC (bone) progressed on letrozole in the metastatic setting; ER and PR are
    then rewritten to `er_value` / `pr_value` (dicts holding one value[x])."""
    c, bc = g.mbc_her2_not_positive(name, her2)
    set_value(latest(c, "Observation", "85337-4"), er_value)
    set_value(latest(c, "Observation", "85339-0"), pr_value)
    return c, bc


def her2_text_patient(name, text, as_string=True):
    """HR+ MBC progressed on letrozole whose HER2 IHC result is `text` (valueString by default)."""
    c, bc = g.mbc_her2_not_positive(name, "placeholder")
    ihc = latest(c, "Observation", "85319-2")
    set_value(ihc, {"valueString": text} if as_string else {"valueCodeableConcept": {"text": text}})
    return c, bc


def rewrite_subjects(bundle, old, new):
    """Point every subject/patient reference `old` of the bundle at `new`."""
    for entry in bundle["entry"]:
        resource = entry["resource"]
        for key in ("subject", "patient"):
            ref = resource.get(key)
            if isinstance(ref, dict) and ref.get("reference") == old:
                ref["reference"] = new


# ---------------------------------------------------------------------------------------------
# HER2 written as text
# ---------------------------------------------------------------------------------------------

HER2LOW_REC = rec("rec.her2low.tdxd", "consider", "t-dxd", review_required=False)


@scenario
def her2_text_ultralow_10pct():
    c, _ = her2_text_patient("rw-her2-text-ultralow-10pct",
                             "0+ with faint incomplete membrane staining in ≤10% of cells")
    return RwCase(c, "HR+ MBC after letrozole; HER2 IHC valueString '0+ with faint incomplete membrane "
                     "staining in ≤10% of cells'", [HER2LOW_REC],
                  "Membrane staining described as present (faint, incomplete, <=10% of cells) makes "
                  "HER2-ultralow even with '0+' written; ultralow + HR-positive after endocrine therapy in "
                  "the metastatic setting gives the DESTINY-Breast06 recommendation.",
                  varies="HER2 IHC text: score 0+ with an ultralow staining description")


@scenario
def her2_text_zero_null():
    c, _ = her2_text_patient("rw-her2-text-zero-null", "0 (null)", as_string=False)
    return RwCase(c, "HR+ MBC after letrozole; HER2 IHC text '0 (null)'",
                  [only("info.her2-negative")],
                  "'0 (null)' is HER2 IHC 0 with no staining: zero, not ultralow, so no HER2-directed "
                  "therapy is indicated (info.her2-negative) and no T-DXd recommendation.",
                  varies="HER2 IHC text '0 (null)' (CodeableConcept.text)")


@scenario
def her2_text_no_staining():
    c, _ = her2_text_patient("rw-her2-text-no-staining",
                             "HER2 (4B5): Score 0 - no staining observed in invasive tumour cells")
    return RwCase(c, "HR+ MBC after letrozole; HER2 IHC text 'Score 0 - no staining observed'",
                  [only("info.her2-negative")],
                  "'no staining' is a negated staining mention: zero, not ultralow (the word 'staining' "
                  "must not make it ultralow); info.her2-negative only.",
                  varies="HER2 IHC text with a negated staining phrase")


@scenario
def her2_text_contradictory():
    c, _ = her2_text_patient("rw-her2-text-contradictory",
                             "HER2 IHC 3+ (positive). Addendum: score 0, no membrane staining")
    return RwCase(c, "HR+ MBC after letrozole; one HER2 IHC result whose text says both 3+ and 0",
                  [only("gap.her2-unknown")],
                  "A result that contradicts itself is not read as either score: HER2 unknown for that "
                  "(only) episode, gap.her2-unknown, and recommendations stay blocked.",
                  varies="HER2 IHC text holding two contradictory scores")


@scenario
def her2_ish_text_amplified():
    def her2(c, spec):
        g.her2_ihc(c, "2+", "2026-09-25", spec)
        g.observation(c, "85318-4", "ERBB2 gene duplication [Presence] in Breast cancer specimen by FISH",
                      "2026-09-29", {"valueString": "AMPLIFIED - HER2/CEP17 ratio 2.6; average HER2 copy "
                                                    "number 5.8 signals/cell (ASCO/CAP group 1)"},
                      extra={"specimen": spec})
    c, _ = g.mbc_untreated("rw-her2-ish-text-amplified", her2=her2)
    return RwCase(c, "De novo MBC, HER2 IHC 2+ with FISH reported only as text 'AMPLIFIED - ratio 2.6 ...'",
                  [dict(r, review_required=False) for r in MBC1],
                  "IHC 2+ takes the ISH of its episode (same specimen); ISH written as 'AMPLIFIED ... group "
                  "1' is positive, so HER2-positive and first-line THP and T-DXd+pertuzumab are preferred.",
                  varies="HER2 ISH as free text (valueString)")


@scenario
def her2_interpretation_la_code():
    def her2(c, spec):
        g.obs_concept(c, "48676-1", "HER2 [Interpretation] in Tissue", "2026-09-25",
                      concept(LOINC, "LA6576-8", "Positive"), spec=spec)
    c, _ = g.mbc_untreated("rw-her2-interpretation-la-code", her2=her2)
    return RwCase(c, "De novo MBC, HER2 only as interpretation 48676-1 = LOINC answer LA6576-8 'Positive'",
                  [dict(r, review_required=False) for r in MBC1],
                  "An interpretation Positive makes HER2 positive whatever code system carries the answer "
                  "(LOINC answer list LA6576-8): first-line recommendations.",
                  varies="HER2 interpretation-only result coded with a LOINC answer (LA) code")


# ---------------------------------------------------------------------------------------------
# ER / PR written as text, percentages, shorthand
# ---------------------------------------------------------------------------------------------


@scenario
def er_text_positive_95():
    c, _ = ultralow_hr("rw-er-text-positive-95", {"valueString": "ER: POSITIVE (95%, strong)"},
                       {"valueString": "PR: NEGATIVE (<1%)"})
    return RwCase(c, "HER2-ultralow MBC after letrozole; ER 'ER: POSITIVE (95%, strong)', "
                     "PR 'PR: NEGATIVE (<1%)'",
                  [HER2LOW_REC],
                  "The answer is read wherever it stands in the string: ER positive, so hr_status "
                  "positive; ultralow + HR+ after endocrine therapy gives the DESTINY-Breast06 "
                  "recommendation (with HR unknown there would be none).",
                  varies="ER result as text with the answer after a label")


@scenario
def er_text_low_positive():
    c, _ = ultralow_hr("rw-er-text-low-positive", {"valueString": "ER low positive (1–10%)"},
                       {"valueString": "Progesterone receptor negative (<1%)"})
    return RwCase(c, "HER2-ultralow MBC after letrozole; ER 'ER low positive (1–10%)', PR negative (<1%)",
                  [rec("rec.her2low.tdxd", "consider", "t-dxd", review_required=True)],
                  "ER-low positive is positive with review_required, so hr_status positive and the "
                  "DESTINY-Breast06 recommendation fires, carrying review_required.",
                  varies="ER-low positive written as text")


@scenario
def er_percent_quantity():
    c, _ = ultralow_hr("rw-er-percent-quantity", {"valueQuantity": quantity(80, "%")},
                       {"valueQuantity": quantity(0, "%")})
    return RwCase(c, "HER2-ultralow MBC after letrozole; ER 80 % and PR 0 % of nuclei (valueQuantity)",
                  [HER2LOW_REC],
                  "ER/PR as a percentage of stained nuclei follow ASCO/CAP: ER 80 % >= 1 % is positive "
                  "(not ER-low), PR 0 % negative; hr_status positive -> DESTINY-Breast06 recommendation.",
                  varies="ER/PR as percentages (valueQuantity %)")


@scenario
def er_shorthand():
    c, _ = ultralow_hr("rw-er-shorthand", {"valueString": "ER+"}, {"valueString": "PR−"})
    return RwCase(c, "HER2-ultralow MBC after letrozole; ER 'ER+', PR 'PR−' (Unicode minus)",
                  [HER2LOW_REC],
                  "'ER+' / 'PR−' shorthand is read as written: ER positive, hr_status positive -> "
                  "DESTINY-Breast06 recommendation.",
                  varies="ER/PR shorthand ER+ / PR− (Unicode minus sign)")


@scenario
def er_negative_pr_percent_text():
    c, _ = ultralow_hr("rw-er-negative-pr-percent", {"valueQuantity": quantity(0.5, "%")},
                       {"valueString": "PR positive, 5% of tumour nuclei, weak intensity"})
    return RwCase(c, "HER2-ultralow MBC after letrozole; ER 0.5 % (negative), PR 'positive, 5% ... weak'",
                  [HER2LOW_REC],
                  "ER 0.5 % is < 1 %: negative; PR 5 % is >= 1 %: positive (the ER-low review applies to ER "
                  "only). hr_status is positive when the latest ER or PR is positive -> DESTINY-Breast06.",
                  varies="ER as a sub-1 % percentage, PR positive as text with a percentage")


# ---------------------------------------------------------------------------------------------
# Setting attributed to the breast primary
# ---------------------------------------------------------------------------------------------

EBC_PLT_HOLD = alert("alert.tdm1-ebc.platelets-hold", "hold", review_required=True)
EBC_NOTE = ("Early HER2+ breast cancer on adjuvant T-DM1 (cycle 12 due), platelets 62: the KATHERINE "
            "table applies (alert.tdm1-ebc.platelets-hold, unverified so review_required); in the "
            "metastatic table 62 would give no alert and info.on-therapy would fire. ")


def breast_condition(c):
    return next(r for r in c.resources if r["resourceType"] == "Condition"
                and any(cd.get("code", "").startswith("C50") for cd in r["code"].get("coding", [])))


@scenario
def ebc_axillary_text_on_tdm1():
    c = g.ebc_on_tdm1("rw-ebc-axillary-text-tdm1", 11, fresh={"plt": 62})
    breast_condition(c)["code"]["text"] = "Ca left breast, metastatic to axillary nodes"
    return RwCase(c, "Early breast cancer on adjuvant T-DM1 whose breast Condition text says 'metastatic to "
                     "axillary lymph nodes'; platelets 62",
                  [EBC_PLT_HOLD],
                  EBC_NOTE + "'metastatic to' a regional breast node site is nodal disease, not distant "
                  "metastasis: the setting stays early.",
                  varies="breast Condition text 'metastatic to axillary lymph nodes'")


@scenario
def ebc_c773_axillary_code():
    c = g.ebc_on_tdm1("rw-ebc-c773-axillary-code", 11, fresh={"plt": 62})
    add_condition(c, "C77.3", "2025-09-01", display="Secondary and unspecified malignant neoplasm of "
                  "axilla and upper limb lymph nodes")
    return RwCase(c, "Early breast cancer on adjuvant T-DM1 with an ICD-10-CM C77.3 axillary node Condition; "
                     "platelets 62",
                  [EBC_PLT_HOLD],
                  EBC_NOTE + "C77.3 (axillary nodes) is a regional breast node code and never by itself "
                  "makes the setting metastatic.",
                  varies="regional-node secondary code C77.3")


@scenario
def second_primary_colon_unlinked():
    c = g.ebc_residual("rw-second-primary-colon-unlinked", "cT2", "cN1", "ypT1c", "ypN1a")
    add_condition(c, "C18.7", "2023-02-06", display="Malignant neoplasm of sigmoid colon",
                  status="resolved", abatement="2024-08-30")
    add_condition(c, "C78.7", "2023-11-20", display="Secondary malignant neoplasm of liver and "
                  "intrahepatic bile duct", status="resolved", abatement="2024-08-30",
                  text="Colorectal liver metastases, segment VI, resected 2024")
    return RwCase(c, "HER2+ early breast cancer with residual ypN1a after neoadjuvant THP, and a sigmoid "
                     "colon "
                     "cancer with liver metastases (not linked to either primary)",
                  [only("gap.metastasis-primary"),
                   rec("rec.ebc.tdxd", "preferred", "t-dxd", review_required=True),
                   rec("rec.ebc.tdm1", "alternative", "t-dm1", review_required=True)],
                  "Another primary exists and the liver metastasis is not linked to the breast cancer: the "
                  "setting is what breast evidence alone shows (early), gap.metastasis-primary fires and "
                  "every recommendation carries review_required (post-neoadjuvant residual ypN1a otherwise "
                  "gives T-DXd preferred, T-DM1 alternative).",
                  varies="second (colon) primary with liver metastases, no link")


def lung_second_primary(name, linked):
    c, bc = g.mbc_untreated(name)
    met = next(r for r in c.resources if r["resourceType"] == "Condition"
               and r["code"]["coding"][0]["code"] == "C79.51")
    if linked:
        met["extension"] = [{"url": MCODE_RELATED_PRIMARY, "valueReference": bc}]
    add_condition(c, "C34.11", "2019-04-15", display="Malignant neoplasm of upper lobe, right bronchus or "
                  "lung", status="resolved", abatement="2019-10-01",
                  text="NSCLC RUL stage IA, lobectomy 2019")
    return c


@scenario
def second_primary_lung_linked():
    c = lung_second_primary("rw-second-primary-lung-linked", True)
    return RwCase(c, "De novo HER2+ MBC whose bone metastasis is linked to the breast Condition by the mCODE "
                     "relatedPrimaryCancerCondition extension; lung cancer history (2019)",
                  [dict(r, review_required=False) for r in MBC1],
                  "The secondary neoplasm is linked to the breast primary, so it counts for it despite the "
                  "other primary: metastatic, first-line recommendations, no gap.metastasis-primary.",
                  varies="second (lung) primary; bone metastasis linked to breast via mCODE extension")


@scenario
def second_primary_lung_unlinked():
    c = lung_second_primary("rw-second-primary-lung-unlinked", False)
    return RwCase(c, "HER2+ breast cancer with a bone metastasis not linked to any primary; lung cancer "
                     "history (2019)",
                  [only("gap.metastasis-primary")],
                  "Another primary exists and the metastasis is unlinked: the setting is what the breast "
                  "evidence alone shows (early, no surgery: no recommendation) and gap.metastasis-primary "
                  "asks to confirm the primary before choosing a line.",
                  varies="second (lung) primary; bone metastasis with no link")


@scenario
def negated_metastasis_text():
    c = g.ebc_on_tdm1("rw-negated-metastasis-text", 11, fresh={"plt": 62})
    breast_condition(c)["code"]["text"] = ("Invasive ductal carcinoma left breast. Staging PET-CT: no "
                                           "evidence of metastatic disease")
    add_condition(c, None, "2025-04-02", text="Liver lesion: metastatic disease ruled out on MRI "
                  "(haemangioma)")
    return RwCase(c, "Early breast cancer on adjuvant T-DM1; texts 'no evidence of metastatic disease' and "
                     "'metastatic disease ruled out'; platelets 62",
                  [EBC_PLT_HOLD],
                  EBC_NOTE + "Both metastasis mentions are negated (preceding 'no evidence of', following "
                  "'ruled out'): not metastatic.",
                  varies="negated metastasis text (preceding and following cues)")


@scenario
def uncertain_bone_metastasis():
    c = g.ebc_residual("rw-uncertain-bone-metastasis", "cT2", "cN1", "ypT1c", "ypN1a")
    add_condition(c, None, "2026-10-20", text="Possible bone metastasis: indeterminate sclerotic lesion T9 "
                  "on CT, MRI pending")
    return RwCase(c, "HER2+ early breast cancer, residual ypN1a after neoadjuvant THP, problem-list text "
                     "'Possible bone metastasis ... MRI pending'",
                  [rec("rec.ebc.tdxd", "preferred", "t-dxd", review_required=True),
                   rec("rec.ebc.tdm1", "alternative", "t-dm1", review_required=True)],
                  "An uncertain mention ('possible') is not positive: the setting stays early and the "
                  "post-neoadjuvant recommendations fire, but metastasis is a safety fact, so the findings "
                  "it would have changed carry review_required.",
                  varies="uncertain metastasis text ('possible ... pending')")


@scenario
def metastasis_local_code_text():
    c, _ = g.mbc_untreated("rw-metastasis-local-code-text")
    met = next(r for r in c.resources if r["resourceType"] == "Condition"
               and r["code"]["coding"][0]["code"] == "C79.51")
    met["code"] = {"coding": [coding(LOCAL_DX, "ONC-0412", "Mets to liver")],
                   "text": "Metastatic carcinoma to liver, breast primary"}
    return RwCase(c, "De novo HER2+ MBC whose metastasis Condition carries only a local code and the text "
                     "'Metastatic carcinoma to liver, breast primary'",
                  [dict(r, review_required=True) for r in MBC1],
                  "A code outside every value set never blocks the text: 'metastatic' makes the setting "
                  "metastatic, but a text-only match of a safety fact counts with review_required.",
                  varies="metastasis recorded with a local code + text only")


# ---------------------------------------------------------------------------------------------
# Exposure from every medication resource; names
# ---------------------------------------------------------------------------------------------

TDM1_NOTE = g.TDM1_NOTE
TDXD_NOTE = g.TDXD_NOTE
TDM1_DATES = every("2026-04-06", 10)


@scenario
def tdm1_statement_only():
    c, _ = mbc_tdm1("rw-tdm1-statement-only", doses=[], fresh={"plt": 42})
    ref = g.med_statement(c, "kadcyla", "2026-04-06", status="active",
                          text="3.6 mg/kg IV every 3 weeks")
    res(c, ref)["dateAsserted"] = at("2026-10-12", "11:00:00")
    return RwCase(c, "MBC on T-DM1 recorded only as an active MedicationStatement (no end, asserted "
                     "2026-10-12); platelets 42",
                  [alert("alert.tdm1.platelets-grade3", "hold"), ON_THERAPY],
                  TDM1_NOTE + "An active MedicationStatement without end, asserted within 42 days, makes "
                  "the patient on T-DM1 (current regimen): grade 3 platelets hold; no second-line "
                  "recommendation (no regimen switch).",
                  varies="T-DM1 only as an active MedicationStatement")


@scenario
def tdm1_dispense_only():
    c, _ = mbc_tdm1("rw-tdm1-dispense-only", doses=[], fresh={"plt": 18})
    for d in TDM1_DATES:
        c.add("MedicationDispense", "md", {
            "status": "completed",
            "medicationCodeableConcept": g.med_concept("kadcyla"),
            "subject": c.ref,
            "quantity": {"value": 245, "unit": "mg"},
            "whenHandedOver": at(d, "09:30:00"),
            "dosageInstruction": [g.dosage_instruction(3.6, "mg/kg")],
        })
    return RwCase(c, "MBC on T-DM1 known only from MedicationDispense records (infusion pharmacy); "
                     "platelets 18",
                  [alert("alert.tdm1.platelets-grade4", "hold-reduce"), ON_THERAPY],
                  TDM1_NOTE + "Dispenses give exposure: last 2026-10-12, on T-DM1; platelets <25 is grade "
                  "4: hold until >=75 then reduce one level.",
                  varies="T-DM1 only as MedicationDispense")


@scenario
def tdm1_orders_next_cycle():
    c, _ = mbc_tdm1("rw-tdm1-orders-next-cycle", doses=[], fresh={"plt": 88})
    for d in TDM1_DATES:
        g.med_request(c, "kadcyla", d, 3.6, "mg/kg")
    order = g.draft_order(c, "kadcyla", 3.6, "mg/kg")
    return RwCase(c, "MBC on T-DM1 recorded as 10 per-cycle completed MedicationRequests; draft cycle 11 "
                     "3.6 mg/kg; platelets 88",
                  [ON_THERAPY],
                  TDM1_NOTE + "Per-cycle completed orders are doses: T-DM1 was started, so the "
                  "'before the first dose' platelet baseline (<100) does not fire; 88 is no grade; the "
                  "order fits 3.6 mg/kg.", order,
                  varies="T-DM1 history as per-cycle completed orders + next-cycle draft")


@scenario
def tdxd_plan_and_entered_in_error():
    c, _ = g.mbc_progressed_after_thp("rw-tdxd-plan-entered-in-error")
    g.med_request(c, "tdxd", "2026-10-28", 5.4, "mg/kg", status="active", intent="plan")
    g.med_admin(c, "enhertu-text", "2026-10-29", 390, "mg", status="entered-in-error")
    return RwCase(c, "HER2+ MBC progressed on THP; a T-DXd MedicationRequest intent 'plan' and an Enhertu "
                     "administration 'entered-in-error'",
                  [dict(r, review_required=False) for r in MBC2],
                  "A plan is not exposure and an entered-in-error record is not a record: T-DXd was never "
                  "given, so second-line T-DXd preferred, T-DM1 alternative; not on T-DXd (no T-DXd checks).",
                  varies="T-DXd plan intent + entered-in-error administration")


@scenario
def tdm1_not_done_only():
    c, _ = g.mbc_progressed_after_thp("rw-tdm1-not-done-only")
    g.med_admin(c, "kadcyla", "2026-10-26", 260, "mg", status="not-done",
                reason="Not given: patient declined, wishes to discuss options")
    return RwCase(c, "HER2+ MBC progressed on THP; a first Kadcyla administration recorded 'not-done'",
                  [dict(r, review_required=False) for r in MBC2],
                  "A not-done administration is never a dose given: T-DM1 not received, not on T-DM1; "
                  "second-line recommendations unchanged.",
                  varies="not-done administration as the only T-DM1 record")


@scenario
def ado_trastuzumab_text():
    c, _ = mbc_tdm1("rw-ado-trastuzumab-text", drug="ado-trastuzumab", fresh={"plt": 42})
    return RwCase(c, "MBC on T-DM1 recorded as text 'ado-trastuzumab 3.6 mg/kg in NS 250 mL IV' (no "
                     "'emtansine', no code); platelets 42",
                  [alert("alert.tdm1.platelets-grade3", "hold"), ON_THERAPY],
                  TDM1_NOTE + "'ado-trastuzumab' is T-DM1, never trastuzumab: on T-DM1, grade 3 platelets "
                  "hold.",
                  varies="T-DM1 as 'ado-trastuzumab' text without emtansine")


@scenario
def fam_trastuzumab_text():
    c, _ = mbc_tdxd("rw-fam-trastuzumab-text", drug="fam-trastuzumab", fresh={"plt": 35})
    return RwCase(c, "MBC on T-DXd recorded as text 'FAM-TRASTUZUMAB 5.4 MG/KG IN D5W 100 ML'; platelets 35",
                  [alert("alert.tdxd.platelets-grade3", "hold"), ON_THERAPY],
                  TDXD_NOTE + "'fam-trastuzumab' is T-DXd, never trastuzumab: grade 3 platelets interrupt.",
                  varies="T-DXd as 'FAM-TRASTUZUMAB' text without deruxtecan")


def first_line_hp_chart(name, birth="1960-02-20"):
    """HER2+ ER-/PR- MBC (lung) like generate.mbc_on_first_line_hp, without the therapy."""
    c = g.Chart(name, "female", birth)
    bc = g.breast_cancer(c, "C50.911", "2026-04-06")
    g.metastasis(c, "94391008", "2026-04-13")
    spec = g.specimen(c, "Core needle biopsy, right breast", "2026-04-08")
    g.her2_ihc(c, "3+", "2026-04-10", spec)
    g.er_pr(c, "2026-04-10", False, False, spec)
    g.weight(c, "2026-04-20", 66)
    g.lvef(c, "2026-04-20", 63)
    return c, bc


def first_line_hp_follow_up(c, bc, lvefs=(("2026-07-20", 61), ("2026-10-14", 60))):
    for d, value in lvefs:
        g.lvef(c, d, value)
    g.disease_status(c, "2026-07-15", False, bc)
    g.disease_status(c, "2026-10-14", False, bc)
    g.weight(c, "2026-10-26", 66)
    g.labs(c, "2026-10-30")


HP_DATES = every("2026-04-27", 9)


@scenario
def biosimilars_brand_only():
    c, bc = first_line_hp_chart("rw-biosimilars-brand-only")
    g.give(c, "docetaxel", HP_DATES[:6], 130, "mg")
    g.give(c, "ogivri", HP_DATES[:1], 8, "mg/kg")
    g.give(c, "ogivri", HP_DATES[1:3], 6, "mg/kg")
    g.give(c, "kanjinti", HP_DATES[3:6], 6, "mg/kg")
    g.give(c, "trastuzumab-anns", HP_DATES[6:], 6, "mg/kg")
    g.give(c, "pertuzumab", HP_DATES[:1], 840, "mg")
    g.give(c, "pertuzumab", HP_DATES[1:], 420, "mg")
    first_line_hp_follow_up(c, bc)
    return RwCase(c, "HER2+ MBC on first-line THP with trastuzumab written only as biosimilar brands "
                     "('Ogivri', 'Kanjinti', then 'trastuzumab-anns'), stable",
                  [ON_THERAPY],
                  "Ogivri (trastuzumab-dkst) and Kanjinti (trastuzumab-anns) are trastuzumab: pertuzumab is "
                  "given with trastuzumab (no pertuzumab-without-trastuzumab) and a biosimilar switch is not "
                  "a new line; stable, info.on-therapy only.",
                  varies="trastuzumab as biosimilar names only (Ogivri, Kanjinti, trastuzumab-anns)")


@scenario
def phesgo_clinical_drug_name():
    c, bc = first_line_hp_chart("rw-phesgo-clinical-drug-name")
    g.give(c, "docetaxel", HP_DATES[:6], 130, "mg")
    g.give(c, "trastuzumab", HP_DATES[:1], 8, "mg/kg")
    g.give(c, "trastuzumab", HP_DATES[1:3], 6, "mg/kg")
    g.give(c, "pertuzumab", HP_DATES[:1], 840, "mg")
    g.give(c, "pertuzumab", HP_DATES[1:3], 420, "mg")
    g.give(c, "phesgo-scd", HP_DATES[3:], 600, "mg", route="sc")
    first_line_hp_follow_up(c, bc)
    order = g.draft_order(c, "phesgo-scd", 600, "mg", route="sc")
    return RwCase(c, "HER2+ MBC on P+T switched to Phesgo written as its RxNorm clinical-drug name "
                     "'hyaluronidase-zzxf / pertuzumab / trastuzumab'; draft next dose 600 mg SC",
                  [ON_THERAPY],
                  "The multi-ingredient name is one product (Phesgo): it counts as trastuzumab and "
                  "pertuzumab, is checked in mg against its fixed doses (600 mg maintenance fits) and is "
                  "never a name confusion; IV P+T -> Phesgo is the same line; stable.", order,
                  varies="Phesgo as RxNorm clinical-drug name, in history and in the draft order")


@scenario
def tdxd_pertuzumab_on_therapy():
    c = g.Chart("rw-tdxd-pertuzumab-on-therapy", "female", "1959-09-09")
    bc = g.breast_cancer(c, "C50.912", "2026-03-09")
    g.metastasis(c, "94381002", "2026-03-16")
    spec = g.specimen(c, "Core needle biopsy, liver", "2026-03-11")
    g.her2_ihc(c, "3+", "2026-03-13", spec)
    g.er_pr(c, "2026-03-13", False, False, spec)
    g.lvef(c, "2026-03-30", 62)
    g.weight(c, "2026-03-30", 75)
    g.labs(c, "2026-04-02")
    g.give(c, "tdxd", TDM1_DATES, 5.4, "mg/kg")
    g.give(c, "pertuzumab", TDM1_DATES[:1], 840, "mg")
    g.give(c, "pertuzumab", TDM1_DATES[1:], 420, "mg")
    g.lvef(c, "2026-07-06", 61)
    g.lvef(c, "2026-09-28", 60)
    g.disease_status(c, "2026-09-30", False, bc)
    g.weight(c, "2026-10-26", 75)
    g.labs(c, "2026-10-31")
    return RwCase(c, "HER2+ MBC on first-line T-DXd + pertuzumab (DESTINY-Breast09), stable",
                  [ON_THERAPY],
                  "T-DXd + pertuzumab is a HER2 regimen: pertuzumab with T-DXd is not 'pertuzumab without "
                  "trastuzumab'; stable with complete labs (incl. ANC), LVEF and weight: info.on-therapy "
                  "only.",
                  varies="pertuzumab given with T-DXd (no trastuzumab)")


@scenario
def endocrine_only_prior_line():
    c, _ = g.mbc_her2_not_positive("rw-endocrine-only-prior-line", "3+")
    stmt = next(r for r in c.resources if r["resourceType"] == "MedicationStatement")
    stmt["status"] = "completed"
    stmt["effectivePeriod"]["end"] = "2026-10-08"
    return RwCase(c, "HER2+ (IHC 3+) ER+ MBC whose only metastatic therapy was letrozole alone, progression",
                  [rec("rec.mbc1.thp", "preferred", "thp", review_required=True),
                   rec("rec.mbc1.tdxd-pertuzumab", "preferred", "t-dxd+pertuzumab", review_required=True)],
                  "A metastatic line without any HER2-directed agent is not a HER2 line: with no prior HER2 "
                  "line the first-line recommendations apply, with review_required naming the prior "
                  "endocrine-only line.",
                  varies="endocrine-only prior metastatic line in a HER2+ patient")


@scenario
def contained_medication():
    c, _ = mbc_tdm1("rw-contained-medication", doses=[], fresh={"plt": 42})
    for d in TDM1_DATES:
        ref = g.med_admin(c, "kadcyla", d, 3.6, "mg/kg")
        admin = res(c, ref)
        del admin["medicationCodeableConcept"]
        admin["contained"] = [{"resourceType": "Medication", "id": "med",
                               "code": concept(RXNORM, "1371046", "Kadcyla")}]
        admin["medicationReference"] = {"reference": "#med"}
    # contained resources must come before the other elements to read naturally
    return RwCase(c, "MBC on T-DM1, each administration naming its drug by medicationReference to a "
                     "contained Medication (Kadcyla 1371046); platelets 42",
                  [alert("alert.tdm1.platelets-grade3", "hold"), ON_THERAPY],
                  TDM1_NOTE + "A medicationReference to a contained Medication uses that Medication's code: "
                  "on T-DM1, grade 3 platelets hold.",
                  varies="medicationReference to a contained Medication")


@scenario
def bundled_medication():
    c, _ = mbc_tdxd("rw-bundled-medication", doses=[], fresh={"anc": 0.8})
    med = c.add("Medication", "med", {
        "code": {"text": "Pharmacy compounded item 4471"},
        "ingredient": [{"itemCodeableConcept": concept(RXNORM, "2267576",
                                                       "fam-trastuzumab deruxtecan-nxki 100 MG Injection"),
                        "isActive": True}],
    })
    for d in TDM1_DATES:
        admin = res(c, g.med_admin(c, "tdxd", d, 5.4, "mg/kg"))
        del admin["medicationCodeableConcept"]
        admin["medicationReference"] = med
    return RwCase(c, "MBC on T-DXd whose administrations reference a bundled Medication known only by its "
                     "ingredient code; ANC 0.8",
                  [alert("alert.tdxd.neutrophils-grade3", "hold"), ON_THERAPY],
                  TDXD_NOTE + "The Medication's ingredient (RxNorm T-DXd) identifies the drug: on T-DXd, "
                  "ANC 0.5 to <1.0 is grade 3: interrupt, same dose.",
                  varies="medicationReference to a bundled Medication coded by ingredient only")


# ---------------------------------------------------------------------------------------------
# Codes and units
# ---------------------------------------------------------------------------------------------


@scenario
def ipf_text_only_first_line():
    c, _ = g.mbc_untreated("rw-ipf-text-only-first-line")
    add_condition(c, None, "2022-01-17", text="Idiopathic pulmonary fibrosis (on nintedanib)")
    return RwCase(c, "De novo HER2+ MBC with 'Idiopathic pulmonary fibrosis' on the problem list as "
                     "text only",
                  [rec("rec.mbc1.thp", "preferred", "thp", review_required=True)],
                  "IPF is ILD; a text-only match of a safety fact counts, with review_required: ILD history "
                  "excludes T-DXd+pertuzumab, THP remains (review_required).",
                  varies="ILD (idiopathic pulmonary fibrosis) as text only")


@scenario
def pulmonary_fibrosis_snomed():
    c, _ = g.mbc_progressed_after_thp("rw-pulmonary-fibrosis-snomed")
    add_condition(c, "51615001", "2023-06-05", system=SNOMED, display="Fibrosis of lung (disorder)",
                  text="Pulmonary fibrosis")
    return RwCase(c, "HER2+ MBC progressed on THP with pulmonary fibrosis coded SNOMED 51615001",
                  [rec("rec.mbc2.tdm1", "alternative", "t-dm1", review_required=True)],
                  "Pulmonary fibrosis is ILD history (a descendant outside the original list): T-DXd is not "
                  "recommended; T-DM1 is the only ADC offered, with review_required.",
                  varies="ILD as SNOMED pulmonary fibrosis (outside the v1 ILD list)")


@scenario
def organizing_pneumonia_enhertu_order():
    c, _ = g.mbc_progressed_after_thp("rw-organizing-pneumonia-order")
    add_condition(c, "OP-22", "2024-02-12", system=LOCAL_DX, display="OP",
                  text="Organizing pneumonia after radiotherapy, treated with prednisone",
                  status="resolved", abatement="2024-05-20")
    order = g.draft_order(c, "tdxd", 389, "mg")
    return RwCase(c, "HER2+ MBC progressed on THP, resolved organizing pneumonia (local code + text); draft "
                     "Enhertu 389 mg (5.4 mg/kg)",
                  [alert("alert.tdxd.ild-history", "review", review_required=True),
                   rec("rec.mbc2.tdm1", "alternative", "t-dm1", review_required=True)],
                  "Organizing pneumonia is ILD; a local code never blocks the text and a text-only match "
                  "counts with review_required. Ordering T-DXd with ILD history: review alert; T-DXd not "
                  "recommended, T-DM1 the only ADC (review). Dose 389/72 = 5.4 mg/kg fits.", order,
                  varies="ILD (organizing pneumonia) under a local code; T-DXd order")


@scenario
def ards_not_ild():
    c, _ = g.mbc_progressed_after_thp("rw-ards-not-ild")
    ards = res(c, add_condition(c, "J80", "2021-01-11", display="Acute respiratory distress syndrome",
                                text="ARDS (COVID-19 pneumonia), resolved", status="resolved",
                                abatement="2021-02-20"))
    ards["code"]["coding"].append(coding(SNOMED, "67782005",
                                         "Acute respiratory distress syndrome (disorder)"))
    return RwCase(c, "HER2+ MBC progressed on THP with a resolved ARDS (J80 + SNOMED 67782005) in 2021",
                  [dict(r, review_required=False) for r in MBC2],
                  "ARDS is not ILD: no ILD history, so second-line T-DXd stays preferred, T-DM1 alternative.",
                  varies="ARDS coded J80 + SNOMED 67782005 (not ILD)")


def plt_unit_case(name, drug, value, unit, findings, note):
    fresh = {"plt": value, "plt_unit": unit}
    c, _ = (mbc_tdxd(name, fresh=fresh) if drug == "tdxd" else mbc_tdm1(name, fresh=fresh))
    for obs in by_code(c, "Observation", "777-3"):
        if obs["valueQuantity"]["unit"] == unit:
            obs["valueQuantity"].pop("system", None)
            obs["valueQuantity"].pop("code", None)
            for bound in obs["referenceRange"][0].values():
                bound.pop("system", None)
                bound.pop("code", None)
    return c


@scenario
def platelets_k_mcl():
    c = plt_unit_case("rw-platelets-k-mcl", "tdm1", 42, "K/mcL", None, None)
    return RwCase(c, "MBC on T-DM1, platelets 42 'K/mcL'",
                  [alert("alert.tdm1.platelets-grade3", "hold"), ON_THERAPY],
                  TDM1_NOTE + "K/mcL = 10^3/uL: 42 is grade 3, hold.", varies="platelet unit K/mcL")


@scenario
def platelets_g_per_l():
    c = plt_unit_case("rw-platelets-g-per-l", "tdxd", 35, "G/L", None, None)
    return RwCase(c, "MBC on T-DXd, platelets 35 'G/L'",
                  [alert("alert.tdxd.platelets-grade3", "hold"), ON_THERAPY],
                  TDXD_NOTE + "G/L = 10^9/L = 10^3/uL: 35 is grade 3, interrupt.", varies="platelet unit G/L")


@scenario
def platelets_per_nl():
    c = plt_unit_case("rw-platelets-per-nl", "tdm1", 18, "/nL", None, None)
    return RwCase(c, "MBC on T-DM1, platelets 18 '/nL'",
                  [alert("alert.tdm1.platelets-grade4", "hold-reduce"), ON_THERAPY],
                  TDM1_NOTE + "/nL = 10^3/uL: 18 is grade 4, hold then reduce.", varies="platelet unit /nL")


@scenario
def platelets_10_3_mm3():
    c = plt_unit_case("rw-platelets-10-3-mm3", "tdm1", 42, "10*3/mm3", None, None)
    return RwCase(c, "MBC on T-DM1, platelets 42 '10*3/mm3'",
                  [alert("alert.tdm1.platelets-grade3", "hold"), ON_THERAPY],
                  TDM1_NOTE + "10*3/mm3 = 10^3/uL: 42 is grade 3, hold.", varies="platelet unit 10*3/mm3")


@scenario
def transaminases_ukat():
    c, _ = mbc_tdm1("rw-transaminases-ukat", fresh={"ast": None, "alt": None})
    for loinc, display, value, unit, low, high in (
            ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
             3.5, "µkat/L", 0.17, 0.67),
            ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
             4.8, "ukat/L", 0.12, 0.68)):
        add_obs(c, loinc, display, "2026-10-31", {"valueQuantity": quantity(value, unit, ucum=False)},
                extra={"referenceRange": [{"low": quantity(low, unit, ucum=False),
                                           "high": quantity(high, unit, ucum=False)}]})
    return RwCase(c, "MBC on T-DM1, AST 3.5 µkat/L (ULN 0.67) and ALT 4.8 ukat/L (ULN 0.68)",
                  [alert("alert.tdm1.ast-alt-grade3", "hold-reduce"), ON_THERAPY],
                  TDM1_NOTE + "µkat/L x60 = U/L: AST 5.2x and ALT 7.1x ULN are grade 3 (>5 to <=20): hold, "
                  "then reduce one level; bilirubin normal, no Hy's law.",
                  varies="transaminases in µkat/L and ukat/L")


@scenario
def lvef_fraction():
    c, bc = first_line_hp_chart("rw-lvef-fraction")
    g.give(c, "docetaxel", HP_DATES[:6], 130, "mg")
    g.give(c, "trastuzumab", HP_DATES[:1], 8, "mg/kg")
    g.give(c, "trastuzumab", HP_DATES[1:], 6, "mg/kg")
    g.give(c, "pertuzumab", HP_DATES[:1], 840, "mg")
    g.give(c, "pertuzumab", HP_DATES[1:], 420, "mg")
    first_line_hp_follow_up(c, bc, lvefs=(("2026-07-20", 61), ("2026-10-14", 58)))
    fractions = {63: {"value": 0.63}, 61: {"value": 0.61, "unit": "1", "system": UCUM, "code": "1"},
                 58: {"value": 0.58}}
    for obs in by_code(c, "Observation", "10230-1"):
        obs["valueQuantity"] = fractions[obs["valueQuantity"]["value"]]
    return RwCase(c, "HER2+ MBC on P+T, every LVEF sent as a fraction (0.63, 0.61 with unit '1', 0.58), "
                     "stable",
                  [ON_THERAPY],
                  "An LVEF with no unit or unit '1' and a value <= 1.0 is a fraction: 58 % with a 5-point "
                  "drop from 63 %, no LVEF alert; stable, info.on-therapy only.",
                  varies="LVEF as a fraction (no unit / unit 1)")


@scenario
def lvef_implausible_5():
    c, bc = first_line_hp_chart("rw-lvef-implausible-5")
    g.give(c, "docetaxel", HP_DATES[:6], 130, "mg")
    g.give(c, "trastuzumab", HP_DATES[:1], 8, "mg/kg")
    g.give(c, "trastuzumab", HP_DATES[1:], 6, "mg/kg")
    g.give(c, "pertuzumab", HP_DATES[:1], 840, "mg")
    g.give(c, "pertuzumab", HP_DATES[1:], 420, "mg")
    first_line_hp_follow_up(c, bc, lvefs=(("2026-08-10", 61), ("2026-10-14", 5)))
    latest(c, "Observation", "10230-1")["valueQuantity"] = {"value": 5}
    return RwCase(c, "HER2+ MBC on P+T, latest LVEF sent as 5 with no unit (previous 61 % on 2026-08-10)",
                  [only("gap.unit-unrecognized"), ON_THERAPY],
                  "A unitless LVEF between 1 and 10 is implausible (neither a fraction nor a percent): "
                  "gap.unit-unrecognized, never read as 5 % (which would be a hold). The previous LVEF is "
                  "within 91 days, so no gap.lvef-overdue.",
                  varies="implausible unitless LVEF 5")


@scenario
def male_applies_to_uln():
    c, _ = mbc_tdm1("rw-male-applies-to-uln", fresh={"ast": None, "alt": None})
    patient = c.resources[0]
    patient["gender"] = "male"
    bc = breast_condition(c)
    bc["code"] = concept(ICD10, "C50.922", "Malignant neoplasm of unspecified site of left male breast")
    female = {"coding": [coding(SNOMED, "248152002", "Female (finding)")], "text": "Female"}
    male = {"coding": [coding(SNOMED, "248153007", "Male (finding)")], "text": "Male"}
    for loinc, display, value, f_high, m_high in (
            ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
             100, 35, 50),
            ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
             60, 35, 55)):
        add_obs(c, loinc, display, "2026-10-31", {"valueQuantity": quantity(value, "U/L")},
                extra={"referenceRange": [
                    {"low": quantity(10, "U/L"), "high": quantity(f_high, "U/L"), "appliesTo": [female]},
                    {"low": quantity(10, "U/L"), "high": quantity(m_high, "U/L"), "appliesTo": [male]}]})
    return RwCase(c, "Man with HER2+ MBC on T-DM1; AST 100 and ALT 60 U/L with female (ULN 35) and male "
                     "(ULN 50 / 55) reference ranges via appliesTo",
                  [ON_THERAPY],
                  TDM1_NOTE + "The range whose appliesTo matches the patient's sex is used: male ULN 50 "
                  "gives AST 2.0x (no grade 2); the female ULN would give 2.9x, a wrong grade 2 alert "
                  "('male' must not match inside 'Female').",
                  varies="male patient, sex-specific reference ranges (female listed first)")


@scenario
def progression_88040_1():
    c, _ = g.mbc_progressed_after_thp("rw-progression-88040-1")
    for obs in by_code(c, "Observation", "97509-4"):
        obs["code"] = concept(LOINC, "88040-1", "Response to cancer treatment")
    return RwCase(c, "HER2+ MBC on first-line THP; disease status recorded with the older mCODE LOINC "
                     "88040-1, "
                     "worsened on 2026-10-22",
                  [dict(r, review_required=False) for r in MBC2],
                  "88040-1 'worsened' is progression: second-line T-DXd preferred, T-DM1 alternative, no "
                  "'progression not documented' review.",
                  varies="progression via LOINC 88040-1")


@scenario
def progression_new_site():
    c, _ = g.mbc_progressed_after_thp("rw-progression-new-site")
    remove(c, latest(c, "Observation", "97509-4"))
    g.metastasis(c, "C78.01", "2026-10-22")
    return RwCase(c, "HER2+ MBC (liver) on first-line THP; new lung metastasis coded 2026-10-22, no disease "
                     "status",
                  [dict(r, review_required=False) for r in MBC2],
                  "A new metastatic site dated after the current regimen began is progression: second-line "
                  "recommendations without review.",
                  varies="progression only as a new metastatic site")


@scenario
def anc_unknown_unit():
    c, _ = mbc_tdxd("rw-anc-unknown-unit", fresh={"anc": None})
    add_obs(c, "751-8", "Neutrophils [#/volume] in Blood by Automated count", "2026-10-31",
            {"valueQuantity": quantity(2.9, "thou/cmm", ucum=False)})
    return RwCase(c, "MBC on T-DXd, fresh ANC reported as 2.9 'thou/cmm'",
                  [only("gap.unit-unrecognized"), ON_THERAPY],
                  TDXD_NOTE + "'thou/cmm' is not a listed unit spelling: the value is unusable, never "
                  "guessed: gap.unit-unrecognized.",
                  varies="ANC in an unlisted unit")


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------


@scenario
def ref_versioned_patient_ild():
    c, _ = mbc_tdxd("rw-ref-versioned-patient-ild")
    cond = res(c, add_condition(c, "205237003", "2024-06-10", system=SNOMED,
                                display="Pneumonitis (disorder)", text="Pneumonitis (resolved)",
                                status="resolved", abatement="2024-08-19"))
    cond["subject"] = {"reference": "Patient/rw-ref-versioned-patient-ild/_history/3"}
    return RwCase(c, "MBC on T-DXd; the resolved pneumonitis Condition refers to Patient/<id>/_history/3",
                  [alert("alert.tdxd.ild-history", "review"), ON_THERAPY],
                  TDXD_NOTE + "A versioned reference names the same patient: the ILD history counts, "
                  "review alert (it must not be dropped as another patient's data).",
                  varies="versioned reference Patient/<id>/_history/3 on the ILD Condition")


@scenario
def ref_absolute_patient():
    c, _ = mbc_tdm1("rw-ref-absolute-patient", fresh={"plt": 42})
    obs = latest(c, "Observation", "777-3")
    obs["subject"] = {"reference": "https://ehr.example.org/fhir/Patient/rw-ref-absolute-patient"}
    return RwCase(c, "MBC on T-DM1; platelets 42 whose subject is an absolute URL of this patient",
                  [alert("alert.tdm1.platelets-grade3", "hold"), ON_THERAPY],
                  TDM1_NOTE + "An absolute URL ending in Patient/<id> is this patient: grade 3 hold.",
                  varies="absolute URL subject of the same patient")


SELF_URN = "urn:uuid:6f1c2a9e-3b7d-4c55-9a0e-2d8f41b7c301"
OTHER_URN = "urn:uuid:0b9d7e42-8c1a-4f3e-b5d6-7a2c9e11f804"


def urn_hook(name):
    def hook(bundle):
        bundle["entry"][0]["fullUrl"] = SELF_URN
        rewrite_subjects(bundle, f"Patient/{name}", SELF_URN)
    return hook


@scenario
def ref_urn_patient():
    name = "rw-ref-urn-patient"
    c, _ = mbc_tdm1(name, fresh={"plt": 18})
    return RwCase(c, "MBC on T-DM1; Patient entry fullUrl urn:uuid:..., every resource refers to the urn; "
                     "platelets 18",
                  [alert("alert.tdm1.platelets-grade4", "hold-reduce"), ON_THERAPY],
                  TDM1_NOTE + "The Patient entry's urn:uuid fullUrl names this patient: all data count; "
                  "grade 4 platelets hold then reduce.", bundle_hook=urn_hook(name),
                  varies="urn:uuid fullUrl of the Patient, all references by urn")


def other_patient_case(name, subject, title, hook=None):
    c, _ = mbc_tdm1(name)
    ref = platelets_raw(c, "2026-10-31", 20, "10*3/uL", time="12:00:00", subject=subject)
    res(c, ref)["subject"]["display"] = "Other, Patient"
    rid = ref["reference"].split("/")[1]
    return RwCase(c, f"MBC on T-DM1, normal fresh labs; plus another patient's platelets 20 ({title})",
                  [only("gap.other-patient-data"), ON_THERAPY],
                  TDM1_NOTE + "A result referring to another patient is excluded (listed in skipped) and "
                  "raises gap.other-patient-data; it never drives a finding: no grade 4 hold from its "
                  "platelets 20 (this patient's own are 185).", skipped=[rid], bundle_hook=hook,
                  varies=f"another patient's platelets 20 by {title}")


@scenario
def other_patient_relative():
    return other_patient_case("rw-other-patient-relative", f"Patient/{OTHER_PATIENT}", "relative reference")


@scenario
def other_patient_absolute():
    return other_patient_case("rw-other-patient-absolute",
                              f"https://ehr.example.org/fhir/Patient/{OTHER_PATIENT}", "absolute URL")


@scenario
def other_patient_versioned():
    return other_patient_case("rw-other-patient-versioned", f"Patient/{OTHER_PATIENT}/_history/2",
                              "versioned reference")


@scenario
def other_patient_urn():
    name = "rw-other-patient-urn"
    return other_patient_case(name, OTHER_URN, "urn:uuid, this patient's fullUrl another urn",
                              hook=urn_hook(name))


# ---------------------------------------------------------------------------------------------
# Malformed entries
# ---------------------------------------------------------------------------------------------


@scenario
def malformed_no_resource_type():
    name = "rw-malformed-no-resource-type"
    c, _ = mbc_tdm1(name)
    raw_id = f"{name}-raw1"

    def hook(bundle):
        bundle["entry"].append({
            "fullUrl": f"{g.BASE_URL}/Observation/{raw_id}",
            "resource": {
                "id": raw_id,
                "status": "final",
                "code": concept(LOINC, "777-3", "Platelets [#/volume] in Blood by Automated count"),
                "subject": {"reference": f"Patient/{name}"},
                "effectiveDateTime": at("2026-10-31", "12:00:00"),
                "valueQuantity": quantity(20, "10*3/uL"),
            },
        })
    return RwCase(c, "MBC on T-DM1, normal fresh labs, plus a platelet result 20 whose resource has no "
                     "resourceType",
                  [only("gap.unreadable-data"), ON_THERAPY],
                  TDM1_NOTE + "An entry without resourceType is skipped with its reason, never a crash; "
                  "its content names platelets (777-3), so gap.unreadable-data names it. It is not read as "
                  "a platelet count: no grade 4 hold.", skipped=[raw_id], bundle_hook=hook,
                  varies="entry with no resourceType naming platelets")


@scenario
def malformed_invalid_platelets():
    c, _ = mbc_tdm1("rw-malformed-invalid-platelets")
    ref = platelets_raw(c, "2026-10-31", 20, "10*3/uL", time="12:00:00")
    res(c, ref)["valueQuantity"]["value"] = "<20"
    return RwCase(c, "MBC on T-DM1, normal fresh labs, plus a later platelet Observation whose value is the "
                     "string '<20' (invalid Quantity)",
                  [only("gap.unreadable-data"), ON_THERAPY],
                  TDM1_NOTE + "An invalid Observation is skipped with the validator's reason; it names "
                  "platelets, so gap.unreadable-data. The valid 185 stays the latest usable value.",
                  skipped=[ref["reference"].split("/")[1]],
                  varies="invalid Observation (string Quantity value) naming platelets")


@scenario
def malformed_wrong_shape_ild():
    c, _ = mbc_tdxd("rw-malformed-wrong-shape-ild")
    ref = add_condition(c, "J84.9", "2025-01-13", display="Interstitial pulmonary disease, unspecified")
    cond = res(c, ref)
    cond["code"] = "J84.9 Interstitial pulmonary disease"
    return RwCase(c, "MBC on T-DXd; a Condition whose code is a bare string 'J84.9 Interstitial pulmonary "
                     "disease' (wrong shape)",
                  [only("gap.unreadable-data"), ON_THERAPY],
                  TDXD_NOTE + "A wrong-shaped resource is skipped with its reason, never a crash; its raw "
                  "content names an ILD code, so gap.unreadable-data makes the unread ILD visible.",
                  skipped=[ref["reference"].split("/")[1]],
                  varies="Condition with code as a bare string (ILD)")


# ---------------------------------------------------------------------------------------------
# Content additions
# ---------------------------------------------------------------------------------------------


@scenario
def pregnancy_positive_urine():
    c, bc = first_line_hp_chart("rw-pregnancy-positive-urine", birth="1992-05-14")
    g.give(c, "docetaxel", HP_DATES[:6], 130, "mg")
    g.give(c, "trastuzumab", HP_DATES[:1], 8, "mg/kg")
    g.give(c, "trastuzumab", HP_DATES[1:], 6, "mg/kg")
    g.give(c, "pertuzumab", HP_DATES[:1], 840, "mg")
    g.give(c, "pertuzumab", HP_DATES[1:], 420, "mg")
    first_line_hp_follow_up(c, bc)
    g.obs_concept(c, "2106-3", "Choriogonadotropin (pregnancy test) [Presence] in Urine", "2026-10-20",
                  g.POSITIVE)
    return RwCase(c, "34-year-old on P+T maintenance with a positive urine pregnancy test on 2026-10-20",
                  [only("alert.pregnancy-positive", severity="critical"), ON_THERAPY],
                  "A positive pregnancy test within 280 days and no later negative, on HER2-directed drugs: "
                  "alert.pregnancy-positive (critical, embryo-fetal toxicity).",
                  varies="positive urine hCG while on therapy")


@scenario
def pregnancy_positive_serum_order():
    c, _ = g.mbc_untreated("rw-pregnancy-positive-serum-order", birth="1995-08-03", met="C78.01")
    g.obs_quantity(c, "19080-1", "Choriogonadotropin [Units/volume] in Serum or Plasma", "2026-10-25",
                   1450, "m[IU]/mL")
    order = g.draft_order(c, "trastuzumab", 8, "mg/kg")
    return RwCase(c, "31-year-old with de novo HER2+ MBC, serum hCG 1450 mIU/mL on 2026-10-25; draft "
                     "trastuzumab 8 mg/kg",
                  [only("alert.pregnancy-positive", severity="critical")]
                  + [dict(r, review_required=False) for r in MBC1],
                  "Serum hCG >= 25 mIU/mL is a positive test: ordering a HER2-directed drug gives "
                  "alert.pregnancy-positive, which replaces alert.pregnancy-unverified. The draft is not "
                  "history: first-line recommendations.", order,
                  varies="positive serum hCG (quantitative) with a draft order")


@scenario
def tdxd_lvef_repeat():
    c, _ = mbc_tdxd("rw-tdxd-lvef-repeat", lvef_t1_baseline=50, lvef_t2_baseline=47, lvef_recent=(45, 42))
    return RwCase(c, "MBC on T-DXd, LVEF 42 % with baseline 47 % before T-DXd (drop 5)",
                  [alert("alert.tdxd.lvef-repeat", "repeat"), ON_THERAPY],
                  TDXD_NOTE + "LVEF 40-45 % with a drop < 10: continue T-DXd, repeat LVEF within 3 weeks "
                  "(no hold: drop is not >= 10 nor > 20).",
                  varies="T-DXd LVEF 42 % drop 5")


@scenario
def tdxd_febrile_neutropenia_condition():
    c, _ = mbc_tdxd("rw-tdxd-febrile-neutropenia-dx", fresh={"anc": 1.4})
    add_condition(c, "409089005", "2026-10-27", system=SNOMED, display="Febrile neutropenia (disorder)",
                  text="Febrile neutropenia, admitted 27/10")
    return RwCase(c, "MBC on T-DXd, febrile neutropenia coded on 2026-10-27, ANC recovered to 1.4",
                  [alert("alert.tdxd.febrile-neutropenia", "hold-reduce"), ON_THERAPY],
                  TDXD_NOTE + "Febrile neutropenia (coded Condition) on T-DXd: interrupt until resolved, "
                  "then reduce one level; ANC 1.4 is no neutropenia grade alert.",
                  varies="febrile neutropenia as a coded Condition")


@scenario
def tdxd_febrile_neutropenia_anc_temp():
    c, _ = mbc_tdxd("rw-tdxd-febrile-neutropenia-labs", fresh={"anc": 0.7})
    add_obs(c, "8310-5", "Body temperature", "2026-10-31", {"valueQuantity": quantity(38.6, "Cel")},
            time="07:40:00", category="vital-signs")
    return RwCase(c, "MBC on T-DXd, ANC 0.7 with temperature 38.6 °C the same morning",
                  [alert("alert.tdxd.febrile-neutropenia", "hold-reduce"),
                   alert("alert.tdxd.neutrophils-grade3", "hold"), ON_THERAPY],
                  TDXD_NOTE + "ANC < 1.0 with temperature >= 38.3 °C is febrile neutropenia: interrupt, "
                  "reduce one level; ANC 0.7 is also grade 3 neutropenia (interrupt, same dose).",
                  varies="febrile neutropenia from ANC + body temperature")


@scenario
def first_line_tdm1_review():
    c, _ = g.mbc_untreated("rw-first-line-tdm1-review", met="94391008")
    g.allergy(c, "583214", "Paclitaxel 100 MG Injection", "2017-05-02")
    g.allergy(c, "72962", "docetaxel", "2018-09-11")
    return RwCase(c, "De novo HER2+ MBC with allergies to paclitaxel (coded as the 583214 product) and "
                     "docetaxel",
                  [rec("rec.mbc1.tdxd-pertuzumab", "preferred", "t-dxd+pertuzumab", review_required=False),
                   rec("rec.mbc1.tdm1", "alternative", "t-dm1", review_required=True)],
                  "Allergy to both taxanes: no THP; T-DXd+pertuzumab preferred; first-line T-DM1 is outside "
                  "the US label, so rec.mbc1.tdm1 carries review_required.",
                  varies="taxane allergy via product code; first-line T-DM1")


def dose_order(c, dose_and_rate, note=None):
    order = g.draft_order(c, "kadcyla", 3.6, "mg/kg", note=note)
    order["dosageInstruction"][0]["doseAndRate"] = dose_and_rate
    return order


@scenario
def order_dose_range():
    c, _ = mbc_tdm1("rw-order-dose-range")
    order = dose_order(c, [{"doseRange": {"low": quantity(3.6, "mg/kg"), "high": quantity(4.8, "mg/kg")}}])
    return RwCase(c, "MBC on T-DM1 3.6 mg/kg; draft next dose written as a doseRange 3.6-4.8 mg/kg",
                  [only("order.dose-out-of-range", severity="critical"), ON_THERAPY],
                  TDM1_NOTE + "A doseRange is checked at its high bound: 4.8 mg/kg is above T-DM1's highest "
                  "level (3.6 + 5 %): critical.", order,
                  varies="draft order doseRange")


@scenario
def order_dose_second_entry():
    c, _ = mbc_tdm1("rw-order-dose-second-entry")
    order = dose_order(c, [{"type": concept("http://terminology.hl7.org/CodeSystem/dose-rate-type",
                                            "ordered", "Ordered"),
                            "rateQuantity": quantity(250, "mL/h")},
                           {"doseQuantity": quantity(6, "mg/kg")}])
    return RwCase(c, "MBC on T-DM1; draft Kadcyla whose first doseAndRate holds only a rate, the second "
                     "the dose 6 mg/kg",
                  [only("order.name-confusion", severity="critical"),
                   only("order.dose-out-of-range", severity="critical"), ON_THERAPY],
                  TDM1_NOTE + "The dose is found in any doseAndRate entry: 6 mg/kg is outside every T-DM1 "
                  "level and equals trastuzumab's 3-weekly dose: name confusion, and above T-DM1's highest "
                  "level.", order,
                  varies="dose in the second doseAndRate entry (first is a rate)")


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def sidecar_yaml(name, case):
    text = g.sidecar_yaml(name, case)
    if case.skipped:
        body, notes = text.split("notes: >\n", 1)
        skipped = "skipped:\n" + "".join(f"  - {g.yaml_scalar(s)}\n" for s in case.skipped)
        text = body + skipped + "notes: >\n" + notes
    return text


def main():
    written = set()
    for fn in SCENARIOS:
        case = fn()
        name = case.chart.name
        assert name.startswith(PREFIX), name
        assert name not in {p.name.split(".")[0] for p in written}, f"duplicate scenario {name}"
        codes = [f["code"] for f in case.findings]
        assert len(codes) == len(set(codes)), f"{name}: duplicate finding code"
        bundle = case.chart.bundle()
        if case.bundle_hook:
            case.bundle_hook(bundle)
        files = {OUT_DIR / f"{name}.json": g.to_json(bundle),
                 OUT_DIR / f"{name}.expected.yaml": sidecar_yaml(name, case)}
        if case.order:
            files[ORDER_DIR / f"{name}.order.json"] = g.to_json(case.order)
        for path, text in files.items():
            g.write(path, text)
            written.add(path)
    for pattern_dir, patterns in ((OUT_DIR, (f"{PREFIX}*.json", f"{PREFIX}*.expected.yaml")),
                                  (ORDER_DIR, (f"{PREFIX}*.order.json",))):
        for pattern in patterns:
            for path in pattern_dir.glob(pattern):
                if path not in written:
                    path.unlink()
    print(f"wrote {len(SCENARIOS)} realistic-variation scenarios to {OUT_DIR}")


def catalogue():
    """(name, what varies, expected codes) of every scenario, for REALWORLD.md."""
    rows = []
    for fn in SCENARIOS:
        case = fn()
        rows.append((case.chart.name, case.varies, [f["code"] for f in case.findings]))
    return rows


if __name__ == "__main__":
    if sys.argv[1:] == ["--list"]:
        print(json.dumps(catalogue(), ensure_ascii=False, indent=1))
    else:
        main()
