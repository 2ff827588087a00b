#!/usr/bin/env python3
"""Generate the synthetic patient fixtures of the HER2 CDS engine.

Stdlib only.  For every clinical scenario this script writes:

* ``fhir_samples/<scenario>.json``           one FHIR R4 Bundle (type ``collection``), one Patient;
* ``fhir_samples/<scenario>.expected.yaml``  the finding codes the engine must return
  (hand-reasoned from ``clinical-spec.md``; the sidecar *is* the expectation);
* ``fhir_samples/orders/<scenario>.order.json`` for order scenarios: the draft MedicationRequest
  under review (status ``draft``, intent ``order``).

Everything is deterministic (fixed ids, fixed dates, no clock, no randomness): running the script
twice gives byte-identical files.  Every sample is evaluated as of ``2026-11-01`` and all data are
dated before it.

Synthetic data only: no real patient is described.  Codes follow US Core / mCODE conventions
(LOINC, SNOMED CT, ICD-10-CM, RxNorm, UCUM).

Usage:  python3 fhir_samples/generate.py
"""

import datetime
import json
import pathlib
import re
import textwrap

AS_OF = "2026-11-01"
OUT_DIR = pathlib.Path(__file__).resolve().parent
ORDER_DIR = OUT_DIR / "orders"
BASE_URL = "https://example.org/fhir"

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"

# ---------------------------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------------------------


def add_days(date, days):
    """'2026-10-12', 21 -> '2026-11-02'."""
    return (datetime.date.fromisoformat(date) + datetime.timedelta(days=days)).isoformat()


def every(start, count, step=21):
    """Dates of `count` doses every `step` days from `start` (default: every 3 weeks)."""
    return [add_days(start, i * step) for i in range(count)]


def at(date, time="08:00:00"):
    """A dateTime on `date` (UTC)."""
    return f"{date}T{time}Z"


# ---------------------------------------------------------------------------------------------
# Chart: the resources of one patient
# ---------------------------------------------------------------------------------------------


class Chart:
    """Collects the resources of one synthetic patient and gives them fixed ids."""

    def __init__(self, name, gender, birth_date):
        self.name = name
        self.counters = {}
        self.resources = []
        self.ref = {"reference": f"Patient/{name}"}
        self.resources.append({
            "resourceType": "Patient",
            "id": name,
            "identifier": [{"system": "https://example.org/fhir/mrn", "value": f"SYN-{name}"}],
            "name": [{"family": "Synthetic", "given": [name]}],
            "gender": gender,
            "birthDate": birth_date,
        })

    def add(self, resource_type, abbr, body):
        """Append a resource with id '<patient>-<abbr><n>' and return its reference."""
        n = self.counters.get(abbr, 0) + 1
        self.counters[abbr] = n
        rid = f"{self.name}-{abbr}{n}"
        self.resources.append({"resourceType": resource_type, "id": rid, **body})
        return {"reference": f"{resource_type}/{rid}"}

    def bundle(self):
        return {
            "resourceType": "Bundle",
            "id": self.name,
            "type": "collection",
            "entry": [
                {"fullUrl": f"{BASE_URL}/{r['resourceType']}/{r['id']}", "resource": r}
                for r in self.resources
            ],
        }


def coding(system, code, display=None):
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return c


def concept(system, code, display, text=None):
    cc = {"coding": [coding(system, code, display)]}
    if text:
        cc["text"] = text
    return cc


def quantity(value, unit, ucum=True):
    """A Quantity; ucum=False writes a unit string only (no system/code), as some feeds do."""
    q = {"value": value, "unit": unit}
    if ucum:
        q.update({"system": UCUM, "code": unit})
    return q


POSITIVE = concept(SNOMED, "10828004", "Positive (qualifier value)")
NEGATIVE = concept(SNOMED, "260385009", "Negative (qualifier value)")
WORSENED = concept(SNOMED, "271299001", "Patient's condition worsened (finding)")
STABLE = concept(SNOMED, "359746009", "Patient's condition stable (finding)")

# ---------------------------------------------------------------------------------------------
# Conditions, procedures, allergies
# ---------------------------------------------------------------------------------------------

BREAST_CODES = {
    "C50.911": (ICD10, "Malignant neoplasm of unspecified site of right female breast"),
    "C50.912": (ICD10, "Malignant neoplasm of unspecified site of left female breast"),
    "254837009": (SNOMED, "Malignant neoplasm of breast (disorder)"),
}
METASTASIS_CODES = {
    "C78.01": (ICD10, "Secondary malignant neoplasm of right lung"),
    "C78.7": (ICD10, "Secondary malignant neoplasm of liver and intrahepatic bile duct"),
    "C79.31": (ICD10, "Secondary malignant neoplasm of brain"),
    "C79.51": (ICD10, "Secondary malignant neoplasm of bone"),
    "94391008": (SNOMED, "Secondary malignant neoplasm of lung (disorder)"),
    "94222008": (SNOMED, "Secondary malignant neoplasm of bone (disorder)"),
    "94381002": (SNOMED, "Secondary malignant neoplasm of liver (disorder)"),
    "94225005": (SNOMED, "Secondary malignant neoplasm of brain (disorder)"),
    "128462008": (SNOMED, "Secondary malignant neoplastic disease (disorder)"),
}
OTHER_CONDITION_CODES = {
    "J84.9": (ICD10, "Interstitial pulmonary disease, unspecified"),
    "J70.4": (ICD10, "Drug-induced interstitial lung disorders, unspecified"),
    "233703007": (SNOMED, "Interstitial lung disease (disorder)"),
    "205237003": (SNOMED, "Pneumonitis (disorder)"),
    "I50.9": (ICD10, "Heart failure, unspecified"),
    "K76.89": (ICD10, "Other specified diseases of liver"),
    "76498008": (SNOMED, "Postmenopausal state (finding)"),
    "I10": (ICD10, "Essential (primary) hypertension"),
    "E11.9": (ICD10, "Type 2 diabetes mellitus without complications"),
}
ALL_CONDITION_CODES = {**BREAST_CODES, **METASTASIS_CODES, **OTHER_CONDITION_CODES}


def condition(c, code, onset, text=None, status="active", abatement=None, category="problem-list-item"):
    system, display = ALL_CONDITION_CODES[code]
    body = {
        "clinicalStatus": concept(COND_CLINICAL, status, status.capitalize()),
        "verificationStatus": concept(COND_VERIFICATION, "confirmed", "Confirmed"),
        "category": [concept(COND_CATEGORY, category, None)],
        "code": concept(system, code, display, text),
        "subject": c.ref,
        "onsetDateTime": onset,
    }
    if abatement:
        body["abatementDateTime"] = abatement
    body["recordedDate"] = onset
    return c.add("Condition", "cond", body)


def breast_cancer(c, code, onset):
    return condition(c, code, onset, category="encounter-diagnosis")


def metastasis(c, code, onset):
    return condition(c, code, onset, category="encounter-diagnosis")


def procedure(c, code, display, date):
    return c.add("Procedure", "proc", {
        "status": "completed",
        "code": concept(SNOMED, code, display),
        "subject": c.ref,
        "performedDateTime": date,
    })


def breast_surgery(c, date, code="64368001"):
    displays = {"64368001": "Partial mastectomy (procedure)",
                "172043006": "Simple mastectomy (procedure)"}
    return procedure(c, code, displays[code], date)


def allergy(c, rxnorm, display, date):
    return c.add("AllergyIntolerance", "allergy", {
        "clinicalStatus": concept(ALLERGY_CLINICAL, "active", "Active"),
        "verificationStatus": concept(ALLERGY_VERIFICATION, "confirmed", "Confirmed"),
        "type": "allergy",
        "category": ["medication"],
        "criticality": "high",
        "code": concept(RXNORM, rxnorm, display),
        "patient": c.ref,
        "recordedDate": date,
        "reaction": [{"manifestation": [concept(SNOMED, "39579001", "Anaphylaxis (disorder)")],
                      "severity": "severe"}],
    })


def specimen(c, text, date):
    return c.add("Specimen", "spec", {
        "type": {"text": text},
        "subject": c.ref,
        "collection": {"collectedDateTime": date},
    })


# ---------------------------------------------------------------------------------------------
# Observations
# ---------------------------------------------------------------------------------------------


def observation(c, loinc, display, date, value, category="laboratory", extra=None):
    """value: a dict holding one value[x] element, e.g. {"valueQuantity": {...}}."""
    body = {"status": "final"}
    if category:
        body["category"] = [concept(OBS_CATEGORY, category, None)]
    body["code"] = concept(LOINC, loinc, display)
    body["subject"] = c.ref
    body["effectiveDateTime"] = at(date)
    body.update(value)
    if extra:
        body.update(extra)
    return c.add("Observation", "obs", body)


def obs_quantity(c, loinc, display, date, value, unit, low=None, high=None, category="laboratory",
                 ucum=True):
    extra = None
    if low is not None or high is not None:
        rng = {}
        if low is not None:
            rng["low"] = quantity(low, unit, ucum)
        if high is not None:
            rng["high"] = quantity(high, unit, ucum)
        extra = {"referenceRange": [rng]}
    return observation(c, loinc, display, date, {"valueQuantity": quantity(value, unit, ucum)},
                       category, extra)


def obs_concept(c, loinc, display, date, value, category="laboratory", spec=None):
    extra = {"specimen": spec} if spec else None
    return observation(c, loinc, display, date, {"valueCodeableConcept": value}, category, extra)


def her2_ihc(c, score_text, date, spec=None, loinc="85319-2"):
    displays = {"85319-2": "HER2 [Presence] in Breast cancer specimen by Immune stain",
                "18474-7": "HER2 Ag [Presence] in Tissue by Immune stain"}
    return obs_concept(c, loinc, displays[loinc], date, {"text": score_text}, spec=spec)


def her2_ish(c, date, positive=None, ratio=None, copies=None, spec=None):
    """Dual-probe ISH: qualitative result and/or ratio + copies per nucleus."""
    if positive is not None:
        obs_concept(c, "85318-4", "ERBB2 gene duplication [Presence] in Breast cancer specimen by FISH",
                    date, POSITIVE if positive else NEGATIVE, spec=spec)
    extra = {"specimen": spec} if spec else None
    if ratio is not None:
        observation(c, "49683-6", "ERBB2 gene copy number/Chromosome 17 copy number in Tissue by FISH",
                    date, {"valueQuantity": quantity(ratio, "{ratio}")}, extra=extra)
    if copies is not None:
        observation(c, "74860-8", "ERBB2 gene copy number/nucleus in Tissue by FISH",
                    date, {"valueQuantity": quantity(copies, "{copies}/{nucleus}")}, extra=extra)


def her2_interpretation(c, date, positive):
    return obs_concept(c, "48676-1", "HER2 [Interpretation] in Tissue", date,
                       POSITIVE if positive else NEGATIVE)


def er_pr(c, date, er, pr, spec=None):
    obs_concept(c, "85337-4", "Estrogen receptor Ag [Presence] in Breast cancer specimen by Immune stain",
                date, POSITIVE if er else NEGATIVE, spec=spec)
    obs_concept(c, "85339-0", "Progesterone receptor Ag [Presence] in Breast cancer specimen by Immune stain",
                date, POSITIVE if pr else NEGATIVE, spec=spec)


def disease_status(c, date, worsened, focus):
    """mCODE CancerDiseaseStatus: worsened (progression) or stable, about the cancer Condition."""
    return observation(c, "97509-4", "Cancer disease status", date,
                       {"valueCodeableConcept": WORSENED if worsened else STABLE},
                       category=None, extra={"focus": [focus]})


def stage_iv(c, date):
    return obs_concept(c, "21908-9", "Stage group.clinical Cancer", date,
                       concept(SNOMED, "258228008", "Stage 4 (qualifier value)"))


def tnm(c, date, loinc, text):
    displays = {"21905-5": "Primary tumor.clinical [Class] Cancer",
                "21906-3": "Regional lymph nodes.clinical [Class] Cancer",
                "21899-0": "Primary tumor.pathology Cancer",
                "21900-6": "Regional lymph nodes.pathology Cancer"}
    return obs_concept(c, loinc, displays[loinc], date, {"text": text}, category=None)


def lvef(c, date, percent):
    return obs_quantity(c, "10230-1", "Left ventricular Ejection fraction", date, percent, "%",
                        category="imaging")


def weight(c, date, kg):
    return obs_quantity(c, "29463-7", "Body weight", date, kg, "kg", category="vital-signs")


def pregnancy_test(c, date):
    return obs_concept(c, "2106-3", "Choriogonadotropin (pregnancy test) [Presence] in Urine", date, NEGATIVE)


def platelets(c, date, value, unit="10*3/uL"):
    return obs_quantity(c, "777-3", "Platelets [#/volume] in Blood by Automated count", date, value, unit,
                        low=150, high=400)


def labs(c, date, plt=185, ast=28, alt=25, bili=0.7, anc=3.6, plt_unit="10*3/uL", ast_uln=40,
         alt_uln=41, bili_uln=1.2, bili_unit="mg/dL", ast_range=True, bili_ucum=True):
    """CBC + liver panel drawn on `date`; None leaves a test out.  ULN = referenceRange.high."""
    if plt is not None:
        platelets(c, date, plt, plt_unit)
    if anc is not None:
        obs_quantity(c, "751-8", "Neutrophils [#/volume] in Blood by Automated count", date, anc,
                     "10*3/uL", low=1.8, high=7.7)
    if ast is not None:
        obs_quantity(c, "1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
                     date, ast, "U/L", *((10, ast_uln) if ast_range else (None, None)))
    if alt is not None:
        obs_quantity(c, "1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
                     date, alt, "U/L", 7, alt_uln)
    if bili is not None:
        low = 3 if bili_unit == "umol/L" else 0.2
        obs_quantity(c, "1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", date, bili,
                     bili_unit, low, bili_uln, ucum=bili_ucum)


# ---------------------------------------------------------------------------------------------
# Medications
# ---------------------------------------------------------------------------------------------

# key -> (RxNorm code or None for text-only, display, text)
DRUGS = {
    "trastuzumab": ("224905", "trastuzumab", "Trastuzumab"),
    "herceptin": ("101306", "Herceptin", "Herceptin (trastuzumab)"),
    "trastuzumab-sc": ("2119714", "5 ML hyaluronidase-oysk 2000 UNT/ML / trastuzumab 120 MG/ML Injection",
                       "Herceptin Hylecta (trastuzumab and hyaluronidase-oysk)"),
    "pertuzumab": ("1298944", "pertuzumab", "Pertuzumab"),
    "phesgo": (None, None, "Phesgo"),
    "tdm1": ("1371041", "ado-trastuzumab emtansine", "Ado-trastuzumab emtansine"),
    "kadcyla": ("1371046", "Kadcyla", "Kadcyla (ado-trastuzumab emtansine)"),
    "tdm1-text-only": (None, None, "ado-trastuzumab emtansine"),
    "tdxd": ("2267576", "fam-trastuzumab deruxtecan-nxki 100 MG Injection",
             "Enhertu (fam-trastuzumab deruxtecan-nxki)"),
    "docetaxel": ("72962", "docetaxel", "Docetaxel"),
    "paclitaxel": ("56946", "paclitaxel", "Paclitaxel"),
    "capecitabine": ("194000", "capecitabine", "Capecitabine"),
    "letrozole": ("72965", "letrozole", "Letrozole"),
    "tamoxifen": ("10324", "tamoxifen", "Tamoxifen"),
    "anastrozole": ("84857", "anastrozole", "Anastrozole"),
    "metformin": ("6809", "metformin", "Metformin"),
}
ROUTES = {"iv": concept(SNOMED, "47625008", "Intravenous route (qualifier value)"),
          "sc": concept(SNOMED, "34206005", "Subcutaneous route (qualifier value)"),
          "po": concept(SNOMED, "26643006", "Oral route (qualifier value)")}


def med_concept(key):
    code, display, text = DRUGS[key]
    if code is None:
        return {"text": text}
    return concept(RXNORM, code, display, text)


def med_admin(c, drug, date, dose=None, unit="mg", route="iv", status="completed", reason=None,
              text=None):
    """One administration; status 'not-done' (with a reason) records a held dose."""
    body = {"status": status}
    if reason:
        body["statusReason"] = [{"text": reason}]
    body["medicationCodeableConcept"] = med_concept(drug)
    body["subject"] = c.ref
    body["effectiveDateTime"] = at(date, "10:30:00")
    dosage = {"route": ROUTES[route]}
    if text:
        dosage["text"] = text
    if dose is not None:
        dosage["dose"] = quantity(dose, unit)
    body["dosage"] = dosage
    return c.add("MedicationAdministration", "ma", body)


def dosage_instruction(dose, unit, route="iv", period_wk=3):
    return {
        "timing": {"repeat": {"frequency": 1, "period": period_wk, "periodUnit": "wk"}},
        "route": ROUTES[route],
        "doseAndRate": [{"doseQuantity": quantity(dose, unit)}],
    }


def med_request(c, drug, date, dose, unit="mg", route="iv", status="completed", intent="order"):
    """An order as exposure evidence (status completed/active, intent order)."""
    return c.add("MedicationRequest", "mr", {
        "status": status,
        "intent": intent,
        "medicationCodeableConcept": med_concept(drug),
        "subject": c.ref,
        "authoredOn": at(date, "09:00:00"),
        "dosageInstruction": [dosage_instruction(dose, unit, route)],
    })


def med_statement(c, drug, start, end=None, status="completed", text=None):
    period = {"start": start}
    if end:
        period["end"] = end
    body = {"status": status, "medicationCodeableConcept": med_concept(drug), "subject": c.ref,
            "effectivePeriod": period}
    if text:
        body["dosage"] = [{"text": text}]
    return c.add("MedicationStatement", "ms", body)


def give(c, drug, dates, dose, unit, route="iv", kind="admin"):
    """Record doses of one drug on `dates`: as administrations (default) or completed orders."""
    for d in dates:
        if kind == "admin":
            med_admin(c, drug, d, dose, unit, route)
        else:
            med_request(c, drug, d, dose, unit, route)


def thp(c, start, cycles, docetaxel_cycles=6, trastuzumab="trastuzumab", kind="admin",
        docetaxel_mg=135):
    """Pertuzumab + trastuzumab + docetaxel every 3 weeks (CLEOPATRA): loading doses on cycle 1,
    docetaxel for the first `docetaxel_cycles` cycles, then P+T maintenance.  Returns the dates."""
    dates = every(start, cycles)
    give(c, trastuzumab, dates[:1], 8, "mg/kg", kind=kind)
    give(c, trastuzumab, dates[1:], 6, "mg/kg", kind=kind)
    give(c, "pertuzumab", dates[:1], 840, "mg", kind=kind)
    give(c, "pertuzumab", dates[1:], 420, "mg", kind=kind)
    give(c, "docetaxel", dates[:docetaxel_cycles], docetaxel_mg, "mg", kind=kind)
    return dates


def draft_order(c, drug, dose, unit, route="iv", period_wk=3, med=None, note=None):
    """The draft MedicationRequest under review (written to orders/<scenario>.order.json)."""
    order = {
        "resourceType": "MedicationRequest",
        "id": f"{c.name}-draft",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": med or med_concept(drug),
        "subject": c.ref,
        "authoredOn": at("2026-10-31", "14:00:00"),
        "dosageInstruction": [dosage_instruction(dose, unit, route, period_wk)],
    }
    if note:
        order["note"] = [{"text": note}]
    return order


# ---------------------------------------------------------------------------------------------
# Expected findings
# ---------------------------------------------------------------------------------------------


def rec(code, strength, regimen, **more):
    return {"code": code, "strength": strength, "regimen": regimen, **more}


def alert(code, action=None, **more):
    f = {"code": code}
    if action:
        f["action"] = action
    f.update(more)
    return f


def only(code, **more):
    """A data gap, info or order finding (no strength/regimen/action to check)."""
    return {"code": code, **more}


ON_THERAPY = only("info.on-therapy")
MBC2 = [rec("rec.mbc2.tdxd", "preferred", "t-dxd"), rec("rec.mbc2.tdm1", "alternative", "t-dm1")]
MBC1 = [rec("rec.mbc1.thp", "preferred", "thp"),
        rec("rec.mbc1.tdxd-pertuzumab", "preferred", "t-dxd+pertuzumab")]


class Case:
    def __init__(self, chart, title, findings, notes, order=None):
        self.chart, self.title, self.findings, self.notes, self.order = chart, title, findings, notes, order


SCENARIOS = []


def scenario(fn):
    SCENARIOS.append(fn)
    return fn


# ---------------------------------------------------------------------------------------------
# Patient templates (complete charts; each scenario changes one thing)
# ---------------------------------------------------------------------------------------------


def mbc_untreated(name, birth="1962-03-14", breast="C50.912", met="C79.51", stage4=False,
                  her2="3+", er=True, pr=False):
    """De novo HER2+ MBC diagnosed in Sept 2026, no treatment yet.  `her2` is an IHC score text,
    None (not tested) or a callable(chart, specimen) writing the HER2 results."""
    c = Chart(name, "female", birth)
    bc = breast_cancer(c, breast, "2026-09-21")
    if stage4:
        stage_iv(c, "2026-09-30")
    else:
        metastasis(c, met, "2026-09-28")
    spec = specimen(c, "Core needle biopsy, breast", "2026-09-23")
    if callable(her2):
        her2(c, spec)
    elif her2 is not None:
        her2_ihc(c, her2, "2026-09-25", spec)
    er_pr(c, "2026-09-25", er, pr, spec)
    lvef(c, "2026-10-20", 62)
    weight(c, "2026-10-26", 70)
    labs(c, "2026-10-26")
    return c, bc


def mbc_progressed_after_thp(name, birth="1961-08-03", kind="admin", trastuzumab="trastuzumab",
                             fresh=None):
    """HER2+ (IHC 3+) ER+ MBC (liver), first-line THP from 2026-03-16 (11 cycles, last 2026-10-12),
    progression on CT 2026-10-22.  LVEF baseline + recent, weight and labs complete."""
    c = Chart(name, "female", birth)
    bc = breast_cancer(c, "C50.912", "2026-02-23")
    metastasis(c, "C78.7", "2026-03-02")
    spec = specimen(c, "Core needle biopsy, left breast", "2026-02-25")
    her2_ihc(c, "3+", "2026-02-27", spec)
    er_pr(c, "2026-02-27", True, True, spec)
    lvef(c, "2026-03-05", 62)
    weight(c, "2026-03-05", 72)
    if kind == "statement":
        med_statement(c, "trastuzumab", "2026-03-16", "2026-10-12",
                      text="8 mg/kg IV loading, then 6 mg/kg every 3 weeks")
        med_statement(c, "pertuzumab", "2026-03-16", "2026-10-12",
                      text="840 mg IV loading, then 420 mg every 3 weeks")
        med_statement(c, "docetaxel", "2026-03-16", "2026-06-29", text="75 mg/m2 IV every 3 weeks x 6")
    else:
        thp(c, "2026-03-16", 11, trastuzumab=trastuzumab, kind=kind)
    disease_status(c, "2026-06-08", False, bc)
    lvef(c, "2026-06-15", 61)
    lvef(c, "2026-09-14", 60)
    disease_status(c, "2026-10-22", True, bc)
    weight(c, "2026-10-26", 72)
    labs(c, "2026-10-30", **(fresh or {}))
    return c, bc


def mbc_on_second_line(name, drug="kadcyla", dose=3.6, doses=None, fresh=None,
                       lvef_t1_baseline=62, lvef_t2_baseline=60, lvef_recent=(59, 58),
                       weight_date="2026-10-26",
                       baseline_anc=4.1, birth="1961-05-14"):
    """HER2+ MBC (bone), first-line THP Oct 2025-Mar 2026, progression 2026-03-16, second-line
    T-DM1 (default) or T-DXd from 2026-04-06 every 3 weeks, last dose 2026-10-12, stable on
    2026-09-30.  Complete: pre-treatment labs, fresh labs 2026-10-31, LVEF baselines + recent, weight.
    `doses`: list of (date, value, unit); `fresh`: keyword overrides for labs() on 2026-10-31."""
    c = Chart(name, "female", birth)
    bc = breast_cancer(c, "C50.912", "2025-09-08")
    metastasis(c, "C79.51", "2025-09-15")
    spec = specimen(c, "Core needle biopsy, left breast", "2025-09-10")
    her2_ihc(c, "3+", "2025-09-12", spec)
    er_pr(c, "2025-09-12", True, False, spec)
    lvef(c, "2025-09-22", lvef_t1_baseline)
    thp(c, "2025-10-06", 8)
    disease_status(c, "2026-03-16", True, bc)
    lvef(c, "2026-03-23", lvef_t2_baseline)
    labs(c, "2026-04-02", plt=230, ast=24, alt=20, bili=0.6, anc=baseline_anc)
    weight(c, "2026-04-02", 68)
    if doses is None:
        doses = [(d, dose, "mg/kg") for d in every("2026-04-06", 10)]
    for d, value, unit in doses:
        med_admin(c, drug, d, value, unit)
    lvef(c, "2026-06-29", lvef_recent[0])
    lvef(c, "2026-09-28", lvef_recent[1])
    disease_status(c, "2026-09-30", False, bc)
    if weight_date:
        weight(c, weight_date, 68)
    labs(c, "2026-10-31", **(fresh or {}))
    return c, bc


def mbc_on_first_line_hp(name, variant="iv", lvefs=(("2026-04-20", 63), ("2026-07-20", 61),
                                                       ("2026-10-14", 60)),
                         trastuzumab_last=None, birth="1960-02-20"):
    """HER2+ ER-/PR- MBC (lung), first-line THP from 2026-04-27 every 3 weeks (9 cycles, last
    2026-10-12), docetaxel x6 then P+T maintenance, stable on 2026-07-15 and 2026-10-14.
    variant: 'iv' (trastuzumab + pertuzumab IV), 'sc-switch' (Herceptin IV then Herceptin Hylecta SC
    from cycle 7), 'phesgo' (IV P+T cycles 1-3, then Phesgo).  trastuzumab_last: last date trastuzumab
    was given (later cycles recorded as held, not-done)."""
    c = Chart(name, "female", birth)
    bc = breast_cancer(c, "C50.911", "2026-04-06")
    metastasis(c, "94391008", "2026-04-13")
    spec = specimen(c, "Core needle biopsy, right breast", "2026-04-08")
    her2_ihc(c, "3+", "2026-04-10", spec)
    er_pr(c, "2026-04-10", False, False, spec)
    weight(c, "2026-04-20", 66)
    dates = every("2026-04-27", 9)
    give(c, "docetaxel", dates[:6], 130, "mg")
    if variant == "iv":
        for i, d in enumerate(dates):
            if trastuzumab_last and d > trastuzumab_last:
                med_admin(c, "trastuzumab", d, 6, "mg/kg", status="not-done",
                          reason="Held: grade 2 infusion-related reaction to trastuzumab on "
                                 f"{trastuzumab_last}; allergy review pending")
            else:
                med_admin(c, "trastuzumab", d, 8 if i == 0 else 6, "mg/kg")
            med_admin(c, "pertuzumab", d, 840 if i == 0 else 420, "mg")
    elif variant == "sc-switch":
        give(c, "herceptin", dates[:1], 8, "mg/kg")
        give(c, "herceptin", dates[1:6], 6, "mg/kg")
        give(c, "trastuzumab-sc", dates[6:], 600, "mg", route="sc")
        give(c, "pertuzumab", dates[:1], 840, "mg")
        give(c, "pertuzumab", dates[1:], 420, "mg")
    elif variant == "phesgo":
        give(c, "trastuzumab", dates[:1], 8, "mg/kg")
        give(c, "trastuzumab", dates[1:3], 6, "mg/kg")
        give(c, "pertuzumab", dates[:1], 840, "mg")
        give(c, "pertuzumab", dates[1:3], 420, "mg")
        for d in dates[3:]:
            med_admin(c, "phesgo", d, route="sc",
                      text="Phesgo 600 mg pertuzumab / 600 mg trastuzumab / 20,000 units hyaluronidase "
                           "SC (maintenance; switched from IV within 6 weeks)")
    for d, value in lvefs:
        lvef(c, d, value)
    disease_status(c, "2026-07-15", False, bc)
    disease_status(c, "2026-10-14", False, bc)
    weight(c, "2026-10-26", 66)
    labs(c, "2026-10-30")
    return c, bc


def mbc_two_prior_lines(name, second="tdxd", brain=False):
    """HER2+ MBC: THP first line (Jun-Oct 2025), progression; second line T-DXd (default) or T-DM1
    from 2025-12-01 to 2026-08-31; progression 2026-09-14 (with new brain metastases if `brain`)."""
    c = Chart(name, "female", "1963-01-30")
    bc = breast_cancer(c, "C50.911", "2025-05-12")
    metastasis(c, "94222008", "2025-05-19")
    spec = specimen(c, "Core needle biopsy, right breast", "2025-05-14")
    her2_ihc(c, "3+", "2025-05-16", spec)
    er_pr(c, "2025-05-16", False, False, spec)
    lvef(c, "2025-05-26", 63)
    thp(c, "2025-06-02", 8)
    disease_status(c, "2025-11-10", True, bc)
    lvef(c, "2025-11-17", 61)
    dose = 5.4 if second == "tdxd" else 3.6
    give(c, second, every("2025-12-01", 14), dose, "mg/kg")
    lvef(c, "2026-05-18", 60)
    lvef(c, "2026-08-17", 59)
    if brain:
        metastasis(c, "C79.31", "2026-09-14")
    disease_status(c, "2026-09-14", True, bc)
    weight(c, "2026-10-26", 64)
    return c, bc


def ebc_residual(name, ct, cn, ypt, ypn, ild=False, surgery_code="64368001"):
    """HER2+ early breast cancer: neoadjuvant THP x6 (2026-04-20 to 2026-08-03), surgery 2026-09-14
    (48 days before as-of), residual invasive disease; no adjuvant HER2 therapy yet."""
    c = Chart(name, "female", "1967-07-19")
    breast_cancer(c, "C50.911", "2026-04-06")
    spec = specimen(c, "Core needle biopsy, right breast", "2026-04-06")
    her2_ihc(c, "3+", "2026-04-08", spec)
    er_pr(c, "2026-04-08", True, False, spec)
    tnm(c, "2026-04-10", "21905-5", ct)
    tnm(c, "2026-04-10", "21906-3", cn)
    if ild:
        condition(c, "233703007", "2022-05-16", text="Interstitial lung disease (stable on CT, no oxygen)")
    lvef(c, "2026-04-13", 64)
    weight(c, "2026-04-13", 64)
    thp(c, "2026-04-20", 6, docetaxel_mg=120)
    breast_surgery(c, "2026-09-14", surgery_code)
    tnm(c, "2026-09-17", "21899-0", ypt)
    tnm(c, "2026-09-17", "21900-6", ypn)
    weight(c, "2026-10-26", 63)
    return c


def ebc_on_tdm1(name, cycles, fresh=None, lvef_recent=60, lvef_baselines=(62, 61)):
    """HER2+ early breast cancer, neoadjuvant THP x6, surgery with residual disease (ypT1b ypN0),
    adjuvant T-DM1 3.6 mg/kg every 3 weeks (KATHERINE): `cycles` given, the last on 2026-10-12."""
    last = "2026-10-12"
    start = add_days(last, -21 * (cycles - 1))
    surgery = add_days(start, -28)
    neo_start = add_days(surgery, -35 - 105)
    dx = add_days(neo_start, -21)
    c = Chart(name, "female", "1963-11-02")
    breast_cancer(c, "C50.912", dx)
    spec = specimen(c, "Core needle biopsy, left breast", dx)
    her2_ihc(c, "3+", add_days(dx, 2), spec)
    er_pr(c, add_days(dx, 2), False, False, spec)
    tnm(c, add_days(dx, 4), "21905-5", "cT2")
    tnm(c, add_days(dx, 4), "21906-3", "cN0")
    lvef(c, add_days(dx, 7), lvef_baselines[0])
    thp(c, neo_start, 6, docetaxel_mg=125)
    breast_surgery(c, surgery)
    tnm(c, add_days(surgery, 3), "21899-0", "ypT1b")
    tnm(c, add_days(surgery, 3), "21900-6", "ypN0")
    lvef(c, add_days(start, -10), lvef_baselines[1])
    labs(c, add_days(start, -3), plt=240, ast=22, alt=19, bili=0.5)
    weight(c, add_days(start, -3), 65)
    give(c, "kadcyla", every(start, cycles), 3.6, "mg/kg")
    lvef(c, "2026-07-06", lvef_baselines[1] - 1)
    lvef(c, "2026-09-28", lvef_recent)
    weight(c, "2026-10-26", 65)
    labs(c, "2026-10-31", **(fresh or {}))
    return c


def mbc_her2_not_positive(name, her2, er=True, pr=True, prior="letrozole"):
    """Metastatic breast cancer (bone) that is not HER2-positive.  `her2`: IHC text or
    callable(chart, specimen).  prior: 'letrozole' (MedicationStatement, active, from 2025-11-24;
    progression 2026-10-05) or 'paclitaxel' (weekly x12 from 2026-05-04; progression 2026-10-12)."""
    c = Chart(name, "female", "1955-06-21")
    if prior == "paclitaxel":
        dx, met, prog = "2026-04-13", "2026-04-20", "2026-10-12"
    else:
        dx, met, prog = "2025-11-03", "2025-11-10", "2026-10-05"
    bc = breast_cancer(c, "C50.911", dx)
    metastasis(c, "94222008", met)
    spec = specimen(c, "Core needle biopsy, right breast", add_days(dx, 1))
    if callable(her2):
        her2(c, spec)
    else:
        her2_ihc(c, her2, add_days(dx, 3), spec)
    er_pr(c, add_days(dx, 3), er, pr, spec)
    if prior == "paclitaxel":
        give(c, "paclitaxel", every("2026-05-04", 12, 7), 140, "mg")
    else:
        med_statement(c, "letrozole", "2025-11-24", status="active", text="2.5 mg orally once daily")
    disease_status(c, prog, True, bc)
    weight(c, "2026-10-26", 61)
    return c, bc


# ---------------------------------------------------------------------------------------------
# Scenarios: recommendations (spec §4)
# ---------------------------------------------------------------------------------------------


@scenario
def mbc_first_line():
    c, _ = mbc_untreated("mbc-first-line")
    return Case(c, "De novo HER2+ (IHC 3+) ER+ MBC (bone, ICD-10-CM C79.51), no prior therapy",
                MBC1, "0 effective lines, no taxane allergy, no ILD: THP and T-DXd+pertuzumab are both "
                "preferred (spec §4 rec.mbc1.thp, rec.mbc1.tdxd-pertuzumab).")


@scenario
def mbc_first_line_stage_iv():
    c, _ = mbc_untreated("mbc-first-line-stage-iv", breast="254837009", stage4=True)
    return Case(c, "De novo HER2+ MBC coded only by SNOMED breast cancer + stage group IV observation",
                MBC1, "No metastasis Condition: stage group IV (LOINC 21908-9 = SNOMED 258228008) makes the "
                "setting metastatic (spec §2 setting); first-line recommendations as in mbc-first-line.")


@scenario
def mbc_first_line_taxane_allergy():
    c, _ = mbc_untreated("mbc-first-line-taxane-allergy", breast="254837009", met="94391008")
    allergy(c, "56946", "paclitaxel", "2019-03-11")
    allergy(c, "72962", "docetaxel", "2019-04-02")
    return Case(c, "De novo HER2+ MBC (SNOMED lung metastasis) with anaphylaxis to paclitaxel and docetaxel",
                [rec("rec.mbc1.tdxd-pertuzumab", "preferred", "t-dxd+pertuzumab"),
                 rec("rec.mbc1.tdm1", "alternative", "t-dm1")],
                "Allergy to both taxanes = taxane_allergy: no THP; T-DXd+pertuzumab still preferred "
                "(taxane allergy does not exclude it); T-DM1 alternative (spec §2, §4 MARIANNE row).")


@scenario
def mbc_first_line_paclitaxel_allergy():
    c, _ = mbc_untreated("mbc-first-line-paclitaxel-allergy", met="C78.01")
    allergy(c, "56946", "paclitaxel", "2018-06-20")
    return Case(c, "De novo HER2+ MBC with an allergy to paclitaxel only",
                [rec("rec.mbc1.thp", "preferred", "thp", review_required=True),
                 rec("rec.mbc1.tdxd-pertuzumab", "preferred", "t-dxd+pertuzumab")],
                "Allergy to one taxane is not taxane_allergy: THP still fires naming docetaxel, with "
                "review_required (spec §2 taxane_allergy); no rec.mbc1.tdm1.")


@scenario
def mbc_first_line_ild():
    c, _ = mbc_untreated("mbc-first-line-ild")
    condition(c, "J84.9", "2023-02-13")
    return Case(c, "De novo HER2+ MBC with interstitial lung disease (ICD-10-CM J84.9) on the problem list",
                [rec("rec.mbc1.thp", "preferred", "thp")],
                "ILD history excludes T-DXd+pertuzumab (spec §4); THP remains; no taxane allergy so no "
                "T-DM1 first line.")


@scenario
def mbc_second_line():
    c, _ = mbc_progressed_after_thp("mbc-second-line")
    return Case(c, "HER2+ MBC progressed on first-line pertuzumab+trastuzumab+docetaxel", MBC2,
                "1 HER2-directed metastatic line, progression (97509-4 worsened 2026-10-22), no prior "
                "T-DXd/T-DM1, no ILD: T-DXd preferred, T-DM1 alternative (spec §4). Still on P+T (last dose "
                "2026-10-12) but LVEF 60 vs baseline 62 and data complete: no alert or gap.")


@scenario
def mbc_second_line_ild():
    c, _ = mbc_progressed_after_thp("mbc-second-line-ild")
    condition(c, "J84.9", "2024-03-11")
    return Case(c, "HER2+ MBC progressed on first-line THP, with interstitial lung disease history",
                [rec("rec.mbc2.tdm1", "alternative", "t-dm1", review_required=True)],
                "ILD history: no rec.mbc2.tdxd; T-DM1 is the only ADC offered, with review_required "
                "(spec §4 rec.mbc2.tdm1).")


@scenario
def mbc_second_line_medication_request():
    c, _ = mbc_progressed_after_thp("mbc-second-line-medication-request", kind="request",
                                    trastuzumab="herceptin")
    med_request(c, "tdxd", "2026-10-28", 5.4, "mg/kg", status="active", intent="proposal")
    return Case(c, "Same as mbc-second-line, exposure recorded as completed MedicationRequests "
                   "(Herceptin brand code 101306), plus a T-DXd proposal", MBC2,
                "Completed orders with intent order count as exposure; the T-DXd MedicationRequest with "
                "intent proposal is not exposure (spec §1) so T-DXd is not 'prior' and rec.mbc2.tdxd fires.")


@scenario
def mbc_second_line_medication_statement():
    c, _ = mbc_progressed_after_thp("mbc-second-line-medication-statement", kind="statement")
    med_statement(c, "letrozole", "2026-07-13", status="active", text="2.5 mg orally once daily")
    return Case(c, "Same as mbc-second-line, exposure as MedicationStatements (effectivePeriod), "
                   "letrozole added to P+T maintenance", MBC2,
                "MedicationStatement periods give first/last dates; adding endocrine therapy to ongoing "
                "HER2 therapy without progression is not a new line (spec §2), so still 1 line.")


@scenario
def mbc_second_line_after_tdxd_pertuzumab():
    c = Chart("mbc-second-line-after-tdxd-pertuzumab", "female", "1959-09-09")
    bc = breast_cancer(c, "C50.912", "2025-12-01")
    metastasis(c, "94381002", "2025-12-08")
    spec = specimen(c, "Core needle biopsy, liver", "2025-12-03")
    her2_ihc(c, "3+", "2025-12-05", spec)
    er_pr(c, "2025-12-05", False, False, spec)
    lvef(c, "2025-12-15", 64)
    dates = every("2026-01-05", 13)
    give(c, "tdxd", dates, 5.4, "mg/kg")
    give(c, "pertuzumab", dates[:1], 840, "mg")
    give(c, "pertuzumab", dates[1:], 420, "mg")
    lvef(c, "2026-07-13", 61)
    disease_status(c, "2026-10-05", True, bc)
    weight(c, "2026-10-26", 75)
    return Case(c, "HER2+ MBC progressed on first-line T-DXd + pertuzumab (DESTINY-Breast09 regimen)",
                [rec("rec.mbc2.tdm1", "alternative", "t-dm1")],
                "Prior T-DXd: no rec.mbc2.tdxd; T-DM1 is the path after first-line T-DXd+P (spec §4). Last "
                "dose 2026-09-14 (48 days) so not on T-DXd/pertuzumab: no safety checks.")


@scenario
def mbc_early_relapse():
    c = Chart("mbc-early-relapse", "female", "1966-01-25")
    bc = breast_cancer(c, "C50.911", "2025-03-10")
    spec = specimen(c, "Core needle biopsy, right breast", "2025-03-12")
    her2_ihc(c, "3+", "2025-03-14", spec)
    er_pr(c, "2025-03-14", False, False, spec)
    tnm(c, "2025-03-17", "21905-5", "cT2")
    tnm(c, "2025-03-17", "21906-3", "cN1")
    lvef(c, "2025-03-31", 65)
    thp(c, "2025-04-07", 6)
    breast_surgery(c, "2025-08-25", "172043006")
    tnm(c, "2025-08-28", "21899-0", "ypT0")
    tnm(c, "2025-08-28", "21900-6", "ypN0")
    med_statement(c, "trastuzumab", "2025-09-15", "2026-05-04",
                  text="Adjuvant trastuzumab 6 mg/kg IV every 3 weeks (to complete 1 year)")
    med_statement(c, "pertuzumab", "2025-09-15", "2026-05-04",
                  text="Adjuvant pertuzumab 420 mg IV every 3 weeks (to complete 1 year)")
    metastasis(c, "C78.7", "2026-09-28")
    disease_status(c, "2026-09-28", True, bc)
    lvef(c, "2026-10-12", 60)
    weight(c, "2026-10-26", 69)
    return Case(c, "Metastatic relapse (liver) 5 months after adjuvant trastuzumab + pertuzumab (pCR)",
                MBC2,
                "metastatic_since 2026-09-28 is within 6 (12 with pertuzumab) months of the last adjuvant "
                "trastuzumab 2026-05-04: early_relapse, effective_lines 1 (spec §2); recurrence documented "
                "as worsened, so second-line T-DXd preferred, T-DM1 alternative (spec §4).")


@scenario
def mbc_third_line_brain_mets():
    c, _ = mbc_two_prior_lines("mbc-third-line-brain-mets", "tdxd", brain=True)
    return Case(c, "HER2+ MBC after THP and T-DXd, progression with new brain metastases (C79.31)",
                [rec("rec.mbc3.tucatinib", "preferred", "tucatinib+trastuzumab+capecitabine"),
                 rec("rec.mbc3.tdm1", "alternative", "t-dm1")],
                ">=2 effective lines with progression; brain metastases make tucatinib preferred; T-DM1 "
                "not received so alternative; T-DXd already received (spec §4).")


@scenario
def mbc_third_line_text_only_tdm1():
    c, _ = mbc_two_prior_lines("mbc-third-line-text-only-tdm1", "tdm1-text-only")
    return Case(c, "HER2+ MBC after THP and T-DM1 recorded by text only ('ado-trastuzumab emtansine', no "
                   "code), progression, no brain metastases",
                [rec("rec.mbc3.tucatinib", "alternative", "tucatinib+trastuzumab+capecitabine"),
                 rec("rec.mbc3.tdxd", "alternative", "t-dxd")],
                "Text containing 'emtansine' is T-DM1, never trastuzumab (spec §1): T-DM1 was received, so "
                "no rec.mbc3.tdm1; tucatinib alternative without brain metastases (spec §4).")


@scenario
def mbc_on_therapy_stable():
    c, _ = mbc_on_first_line_hp("mbc-on-therapy-stable")
    return Case(c, "HER2+ MBC on first-line THP, P+T maintenance, stable disease",
                [ON_THERAPY],
                "On a metastatic regimen (last dose 2026-10-12) with no worsened status since it began: "
                "info.on-therapy only; LVEF 60 vs baseline 63, labs and weight present (spec §4).")


@scenario
def mbc_on_therapy_sc_switch():
    c, _ = mbc_on_first_line_hp("mbc-on-therapy-sc-switch", variant="sc-switch")
    return Case(c, "HER2+ MBC on first-line THP (Herceptin IV, code 101306) switched to Herceptin Hylecta SC "
                   "(2119714) for maintenance, stable",
                [ON_THERAPY],
                "Another form of the same antibody (IV -> SC) is not a new line (spec §2); stable: "
                "info.on-therapy only.")


@scenario
def mbc_on_therapy_phesgo():
    c, _ = mbc_on_first_line_hp("mbc-on-therapy-phesgo", variant="phesgo")
    return Case(c, "HER2+ MBC on first-line THP, switched from IV P+T to Phesgo (text only) at cycle 4, "
                   "stable",
                [ON_THERAPY],
                "Phesgo counts as trastuzumab and pertuzumab (no pertuzumab-without-trastuzumab alert) and "
                "IV P+T <-> Phesgo is the same line (spec §1, §2).")


@scenario
def mbc_progression_undocumented():
    c = Chart("mbc-progression-undocumented", "female", "1958-12-01")
    breast_cancer(c, "C50.912", "2025-12-08")
    metastasis(c, "C79.51", "2025-12-15")
    spec = specimen(c, "Core needle biopsy, left breast", "2025-12-10")
    her2_ihc(c, "3+", "2025-12-12", spec)
    er_pr(c, "2025-12-12", True, True, spec)
    lvef(c, "2025-12-22", 61)
    thp(c, "2026-01-05", 11)
    lvef(c, "2026-04-06", 60)
    lvef(c, "2026-07-06", 60)
    weight(c, "2026-10-26", 70)
    return Case(c, "HER2+ MBC, first-line THP stopped 2026-08-03 (90 days ago), no disease status recorded",
                [rec("rec.mbc2.tdxd", "preferred", "t-dxd", review_required=True),
                 rec("rec.mbc2.tdm1", "alternative", "t-dm1", review_required=True)],
                "No dose within 42 days and no worsened status: progression unknown; next-line "
                "recommendations still fire with review_required ('progression not documented', spec §2).")


@scenario
def her2_discordant():
    c = Chart("her2-discordant", "female", "1965-04-04")
    bc = breast_cancer(c, "C50.911", "2024-10-07")
    spec1 = specimen(c, "Core needle biopsy, right breast", "2024-10-07")
    her2_ihc(c, "3+", "2024-10-09", spec1)
    er_pr(c, "2024-10-09", False, False, spec1)
    breast_surgery(c, "2024-10-28")
    med_statement(c, "paclitaxel", "2024-11-18", "2025-02-03", text="80 mg/m2 IV weekly x 12 (adjuvant)")
    med_statement(c, "trastuzumab", "2024-11-18", "2025-10-27", text="Adjuvant trastuzumab, 1 year")
    metastasis(c, "C78.7", "2026-09-21")
    spec2 = specimen(c, "Core needle biopsy, liver", "2026-09-21")
    her2_ihc(c, "1+", "2026-09-24", spec2)
    er_pr(c, "2026-09-24", False, False, spec2)
    disease_status(c, "2026-09-21", True, bc)
    lvef(c, "2026-10-19", 62)
    weight(c, "2026-10-26", 67)
    return Case(c, "Primary tumour HER2 IHC 3+ (2024), liver metastasis biopsy IHC 1+ (2026); relapse 11 "
                   "months after adjuvant trastuzumab",
                [only("info.her2-discordant")] + MBC1,
                "Earlier episode positive, latest not: category stays positive and info.her2-discordant "
                "fires (spec §2). Relapse >6 months after adjuvant trastuzumab (no pertuzumab): not early "
                "relapse, 0 effective lines -> first-line recommendations.")


@scenario
def ebc_residual_tdxd():
    c = ebc_residual("ebc-residual-tdxd", "cT2", "cN1", "ypT1c", "ypN1a")
    return Case(c, "HER2+ early breast cancer, residual ypT1c ypN1a after neoadjuvant THP, surgery 48 "
                   "days ago",
                [rec("rec.ebc.tdxd", "preferred", "t-dxd"), rec("rec.ebc.tdm1", "alternative", "t-dm1")],
                "Residual node-positive disease (ypN1) within 84 days of surgery: T-DXd preferred "
                "(DESTINY-Breast05), T-DM1 alternative (spec §4).")


@scenario
def ebc_residual_tdm1():
    c = ebc_residual("ebc-residual-tdm1", "cT2", "cN0", "ypT1a", "ypN0", surgery_code="172043006")
    return Case(c, "HER2+ early breast cancer, small residual ypT1a ypN0 (cT2 cN0) after neoadjuvant THP",
                [rec("rec.ebc.tdxd", "alternative", "t-dxd", review_required=True),
                 rec("rec.ebc.tdm1", "preferred", "t-dm1")],
                "Residual disease but not ypN1-3 nor cT4/N2-3: T-DXd alternative with review_required (FDA "
                "label broader than DB-05), so T-DM1 (KATHERINE) preferred (spec §4).")


@scenario
def ebc_residual_ild():
    c = ebc_residual("ebc-residual-ild", "cT4b", "cN2", "ypT2", "ypN1a", ild=True)
    return Case(c, "HER2+ early breast cancer, high-risk residual disease, interstitial lung disease history",
                [rec("rec.ebc.tdm1", "preferred", "t-dm1")],
                "ILD history excludes rec.ebc.tdxd and makes T-DM1 preferred (spec §4).")


@scenario
def her2low_after_chemo():
    c, _ = mbc_her2_not_positive("her2low-after-chemo", "1+", er=False, pr=False, prior="paclitaxel")
    return Case(c, "HER2-low (IHC 1+) HR-negative MBC after weekly paclitaxel in the metastatic setting",
                [rec("rec.her2low.tdxd", "consider", "t-dxd")],
                "HER2-low after >=1 chemotherapy in the metastatic setting (DESTINY-Breast04, spec §4 "
                "rec.her2low.tdxd (a)).")


@scenario
def her2_ultralow_hr_positive():
    c, _ = mbc_her2_not_positive("her2-ultralow-hr-positive",
                                 "0 with faint incomplete membrane staining (ultralow)")
    return Case(c, "HER2-ultralow HR+ MBC progressed on letrozole (MedicationStatement), no chemotherapy",
                [rec("rec.her2low.tdxd", "consider", "t-dxd")],
                "Ultralow + hr_status positive after >=1 endocrine therapy in the metastatic setting "
                "(DESTINY-Breast06, spec §4 rec.her2low.tdxd (b)).")


@scenario
def her2_zero():
    c, _ = mbc_her2_not_positive("her2-zero", "0")
    return Case(c, "HER2 IHC 0 (bare '0') HR+ MBC progressed on letrozole",
                [only("info.her2-negative")],
                "A bare '0' is zero, not ultralow: info.her2-negative only, no T-DXd (spec §2, §4).")


@scenario
def not_applicable():
    c = Chart("not-applicable", "male", "1956-08-30")
    condition(c, "I10", "2015-05-04")
    condition(c, "E11.9", "2018-11-12")
    med_statement(c, "metformin", "2018-11-12", status="active", text="500 mg orally twice daily")
    labs(c, "2026-10-20", anc=None)
    weight(c, "2026-10-20", 88)
    return Case(c, "Man with hypertension and type 2 diabetes, no breast cancer",
                [only("info.not-applicable")],
                "No breast cancer: setting none, info.not-applicable only (spec §2).")


# ---------------------------------------------------------------------------------------------
# Scenarios: HER2 data gaps (spec §7); recommendations are blocked while a gap.her2-* is open
# ---------------------------------------------------------------------------------------------


@scenario
def gap_her2_unknown():
    c, _ = mbc_untreated("gap-her2-unknown", her2=None)
    return Case(c, "De novo MBC, ER+, HER2 never tested", [only("gap.her2-unknown")],
                "No HER2 result: gap.her2-unknown; recommendations blocked (spec §4, §7).")


@scenario
def gap_her2_ihc2_no_ish():
    c, _ = mbc_untreated("gap-her2-ihc2-no-ish", her2="2+")
    return Case(c, "De novo MBC, HER2 IHC 2+ with no ISH", [only("gap.her2-ish-required")],
                "IHC 2+ without ISH is equivocal: gap.her2-ish-required, recommendations blocked (spec "
                "§2, §7).")


@scenario
def gap_her2_ish_review():
    def her2(c, spec):
        her2_ihc(c, "2+", "2026-09-25", spec)
        her2_ish(c, "2026-09-29", ratio=1.6, copies=4.8, spec=spec)
    c, _ = mbc_untreated("gap-her2-ish-review", her2=her2)
    return Case(c, "De novo MBC, HER2 IHC 2+ with ISH group 4 (ratio 1.6, 4.8 copies/nucleus)",
                [only("gap.her2-ish-review")],
                "ISH group 4 with IHC 2+ needs review: gap.her2-ish-review, recommendations blocked "
                "(spec §2).")


@scenario
def her2_ish_group2_ihc3():
    def her2(c, spec):
        her2_ihc(c, "3+", "2026-09-25", spec)
        her2_ish(c, "2026-09-29", ratio=2.3, copies=3.6, spec=spec)
    c, _ = mbc_untreated("her2-ish-group2-ihc3", her2=her2)
    return Case(c, "De novo MBC, ISH group 2 (ratio 2.3, 3.6 copies) with concurrent IHC 3+", MBC1,
                "ISH group 2-4 with IHC 3+ is positive (spec §2): no gap, first-line recommendations.")


@scenario
def gap_her2_ihc_score():
    c, _ = mbc_her2_not_positive("gap-her2-ihc-score",
                                 lambda c, spec: her2_interpretation(c, "2025-11-06", False))
    return Case(c, "HR+ MBC progressed on letrozole; HER2 recorded only as interpretation 'Negative'",
                [only("gap.her2-ihc-score")],
                "Negative without an IHC score in the metastatic setting: gap.her2-ihc-score (HER2-low/"
                "ultralow cannot be assessed); rec.her2low blocked, no info.her2-negative (spec §4).")


# ---------------------------------------------------------------------------------------------
# Scenarios: T-DM1 safety, metastatic setting (spec §5).  All on second-line T-DM1, stable.
# ---------------------------------------------------------------------------------------------

TDM1_NOTE = "On second-line T-DM1 (MBC) with no progression since it began: info.on-therapy. "


@scenario
def tdm1_platelets_grade3():
    c, _ = mbc_on_second_line("tdm1-platelets-grade3", fresh={"plt": 42})
    return Case(c, "MBC on T-DM1 (Kadcyla 1371046), platelets 42 x10^3/uL before the next dose",
                [alert("alert.tdm1.platelets-grade3", "hold"), ON_THERAPY],
                TDM1_NOTE + "Platelets 25 to <50: grade 3, hold until >=75 then same dose (spec §5).")


@scenario
def tdm1_platelets_grade3_si_units():
    c, _ = mbc_on_second_line("tdm1-platelets-grade3-si-units", drug="tdm1",
                              fresh={"plt": 38, "plt_unit": "10*9/L"})
    return Case(c, "MBC on T-DM1 (ingredient 1371041), platelets 38 reported in 10*9/L",
                [alert("alert.tdm1.platelets-grade3", "hold"), ON_THERAPY],
                TDM1_NOTE + "38 x10^9/L = 38 x10^3/uL: grade 3 (spec §5, §9 units).")


@scenario
def tdm1_platelets_exactly_25():
    c, _ = mbc_on_second_line("tdm1-platelets-exactly-25", fresh={"plt": 25})
    return Case(c, "MBC on T-DM1, platelets exactly 25 x10^3/uL",
                [alert("alert.tdm1.platelets-grade3", "hold"), ON_THERAPY],
                TDM1_NOTE + "Grade 3 is >=25 and <50, so 25 is grade 3, not grade 4 (spec §5).")


@scenario
def tdm1_platelets_exactly_50():
    c, _ = mbc_on_second_line("tdm1-platelets-exactly-50", fresh={"plt": 50})
    return Case(c, "MBC on T-DM1, platelets exactly 50 x10^3/uL, no lower value since the last dose",
                [ON_THERAPY],
                TDM1_NOTE + "50 is not <50: no grade 3 alert; 50-<75 but no value <50 since the last dose, "
                "so no platelets-not-recovered (spec §5).")


@scenario
def tdm1_platelets_grade4():
    c, _ = mbc_on_second_line("tdm1-platelets-grade4", fresh={"plt": 18})
    return Case(c, "MBC on T-DM1, platelets 18 x10^3/uL",
                [alert("alert.tdm1.platelets-grade4", "hold-reduce"), ON_THERAPY],
                TDM1_NOTE + "<25: grade 4, hold until >=75 then reduce one level (3.6 -> 3.0) (spec §5).")


@scenario
def tdm1_platelets_not_recovered():
    c, _ = mbc_on_second_line("tdm1-platelets-not-recovered", fresh={"plt": 63})
    platelets(c, "2026-10-19", 41)
    return Case(c, "MBC on T-DM1, nadir platelets 41 on 2026-10-19 after the 2026-10-12 dose, 63 on "
                   "2026-10-31",
                [alert("alert.tdm1.platelets-not-recovered", "hold"), ON_THERAPY],
                TDM1_NOTE + "Latest 50 to <75 with a value <50 (none <25) since the last dose: hold until "
                ">=75 (spec §5); latest is not grade 3 itself.")


@scenario
def tdm1_ast_alt_grade2():
    c, _ = mbc_on_second_line("tdm1-ast-alt-grade2", fresh={"ast": 120, "alt": 150})
    return Case(c, "MBC on T-DM1, AST 120 U/L (ULN 40, 3.0x), ALT 150 U/L (ULN 41, 3.7x)",
                [alert("alert.tdm1.ast-alt-grade2", "continue"), ON_THERAPY],
                TDM1_NOTE + ">2.5 to <=5 xULN: grade 2, treat at the same dose; bilirubin normal so no "
                "Hy's law (spec §5).")


@scenario
def tdm1_ast_exactly_5x_uln():
    c, _ = mbc_on_second_line("tdm1-ast-exactly-5x-uln", fresh={"ast": 200, "alt": 180})
    return Case(c, "MBC on T-DM1, AST 200 U/L with ULN 40 (exactly 5.0x), ALT 180 (4.4x)",
                [alert("alert.tdm1.ast-alt-grade2", "continue"), ON_THERAPY],
                TDM1_NOTE + "Grade 2 is >2.5 and <=5 xULN, so exactly 5.0x is grade 2, not grade 3 "
                            "(spec §5).")


@scenario
def tdm1_ast_alt_grade3():
    c, _ = mbc_on_second_line("tdm1-ast-alt-grade3", fresh={"ast": 210, "alt": 287})
    return Case(c, "MBC on T-DM1, AST 210 U/L (5.25x), ALT 287 U/L (7.0x)",
                [alert("alert.tdm1.ast-alt-grade3", "hold-reduce"), ON_THERAPY],
                TDM1_NOTE + ">5 to <=20 xULN: hold until <=grade 2, then reduce one level (spec §5).")


@scenario
def tdm1_ast_alt_grade4():
    c, _ = mbc_on_second_line("tdm1-ast-alt-grade4", fresh={"ast": 880, "alt": 1025, "bili": 1.0})
    return Case(c, "MBC on T-DM1, AST 880 U/L (22x), ALT 1025 U/L (25x), bilirubin normal",
                [alert("alert.tdm1.ast-alt-grade4", "discontinue"), ON_THERAPY],
                TDM1_NOTE + ">20 xULN: grade 4, permanently discontinue; bilirubin 0.83x so no Hy's law "
                            "(spec §5).")


@scenario
def tdm1_bilirubin_grade2():
    c, _ = mbc_on_second_line("tdm1-bilirubin-grade2", fresh={"bili": 2.2})
    return Case(c, "MBC on T-DM1, total bilirubin 2.2 mg/dL (ULN 1.2, 1.83x)",
                [alert("alert.tdm1.bilirubin-grade2", "hold"), ON_THERAPY],
                TDM1_NOTE + ">1.5 to <=3 xULN: hold until <=grade 1, same dose (spec §5).")


@scenario
def tdm1_bilirubin_grade3():
    c, _ = mbc_on_second_line("tdm1-bilirubin-grade3",
                              fresh={"bili": 82, "bili_unit": "umol/L", "bili_uln": 21})
    return Case(c, "MBC on T-DM1, total bilirubin 82 umol/L (ULN 21 umol/L, 3.9x)",
                [alert("alert.tdm1.bilirubin-grade3", "hold-reduce"), ON_THERAPY],
                TDM1_NOTE + "umol/L value and ULN (both /17.1 to mg/dL): 3.9x = grade 3, hold then reduce "
                "(spec §5, §9).")


@scenario
def tdm1_bilirubin_grade4():
    c, _ = mbc_on_second_line("tdm1-bilirubin-grade4", fresh={"bili": 13.2})
    return Case(c, "MBC on T-DM1, total bilirubin 13.2 mg/dL (11x ULN), transaminases normal",
                [alert("alert.tdm1.bilirubin-grade4", "discontinue"), ON_THERAPY],
                TDM1_NOTE + ">10 xULN: grade 4, discontinue (spec §5).")


@scenario
def tdm1_hy_law():
    c, _ = mbc_on_second_line("tdm1-hy-law", fresh={"ast": 160, "alt": 190, "bili": 3.0})
    return Case(c, "MBC on T-DM1, AST 160 (4.0x), ALT 190 (4.6x), bilirubin 3.0 mg/dL (2.5x), same draw",
                [alert("alert.tdm1.hy-law", "discontinue"),
                 alert("alert.tdm1.ast-alt-grade2", "continue"),
                 alert("alert.tdm1.bilirubin-grade2", "hold"), ON_THERAPY],
                TDM1_NOTE + "Transaminases >3x with bilirubin >2x drawn together: permanent discontinuation; "
                "the grade alerts for each value still fire (spec §5).")


@scenario
def tdm1_nrh():
    c, _ = mbc_on_second_line("tdm1-nrh")
    condition(c, "K76.89", "2026-10-20", text="Nodular regenerative hyperplasia of liver")
    return Case(c, "MBC on T-DM1, liver biopsy shows nodular regenerative hyperplasia",
                [alert("alert.tdm1.nrh", "discontinue"), ON_THERAPY],
                TDM1_NOTE + "NRH: permanently discontinue (spec §5).")


@scenario
def tdm1_ild():
    c, _ = mbc_on_second_line("tdm1-ild")
    condition(c, "J70.4", "2026-10-27", text="Drug-induced pneumonitis on ado-trastuzumab emtansine")
    return Case(c, "MBC on T-DM1, drug-induced interstitial lung disease diagnosed 2026-10-27",
                [alert("alert.tdm1.ild", "discontinue"), ON_THERAPY],
                TDM1_NOTE + "ILD/pneumonitis on T-DM1: discontinue (spec §5).")


@scenario
def tdm1_lvef_hold():
    c, _ = mbc_on_second_line("tdm1-lvef-hold", lvef_t2_baseline=58, lvef_recent=(55, 42))
    return Case(c, "MBC on T-DM1, LVEF 42% on 2026-09-28, baseline 58% before T-DM1 (62% before THP)",
                [alert("alert.tdm1.lvef-hold", "hold"), ON_THERAPY],
                TDM1_NOTE + "LVEF 40-45 with a drop >=10 points (16; 20 from the THP baseline): hold, repeat "
                "within 3 weeks (spec §5).")


@scenario
def tdm1_lvef_repeat():
    c, _ = mbc_on_second_line("tdm1-lvef-repeat", lvef_t1_baseline=54, lvef_t2_baseline=52,
                              lvef_recent=(50, 45))
    return Case(c, "MBC on T-DM1, LVEF 45%, baseline 52% before T-DM1",
                [alert("alert.tdm1.lvef-repeat", "repeat"), ON_THERAPY],
                TDM1_NOTE + "40 <= LVEF <= 45 with a drop <10 points (7): continue, repeat LVEF within "
                            "3 weeks "
                "(spec §5); 9 points from the earlier pre-THP LVEF 54, so the same answer whichever "
                "baseline.")


@scenario
def tdm1_text_only_lvef_drop():
    c, _ = mbc_on_second_line("tdm1-text-only-lvef-drop", drug="tdm1-text-only", lvef_t1_baseline=66,
                              lvef_t2_baseline=66,
                              lvef_recent=(60, 50))
    return Case(c, "MBC on T-DM1 recorded by text only ('ado-trastuzumab emtansine'), LVEF 50% from 66%",
                [ON_THERAPY],
                TDM1_NOTE + "Text-only T-DM1 is T-DM1, never trastuzumab (spec §1): LVEF 50 >45 needs "
                            "no T-DM1 "
                "action; trastuzumab's drop >=16 rule must not fire. Labs complete so no gap.")


@scenario
def tdm1_dose_floor():
    doses = ([(d, 3.6, "mg/kg") for d in every("2026-04-06", 3)]
             + [(d, 3.0, "mg/kg") for d in every("2026-06-08", 3)]
             + [(d, 2.4, "mg/kg") for d in every("2026-08-10", 4)])
    c, _ = mbc_on_second_line("tdm1-dose-floor", doses=doses, fresh={"ast": 210, "alt": 287})
    return Case(c, "MBC on T-DM1 already reduced to 2.4 mg/kg, now AST/ALT grade 3 (5.25x / 7.0x)",
                [alert("alert.tdm1.ast-alt-grade3", "hold-reduce"),
                 alert("alert.tdm1.dose-floor", "discontinue"), ON_THERAPY],
                TDM1_NOTE + "Grade 3 calls for a one-level reduction but the dose is already 2.4 mg/kg: "
                "discontinue (spec §5 dose-floor).")


@scenario
def tdm1_ebc_katherine_table():
    c = ebc_on_tdm1("tdm1-ebc-katherine-table", 11, fresh={"plt": 62, "alt": 164})
    return Case(c, "Early breast cancer on adjuvant T-DM1 (cycle 12 due), platelets 62, ALT 164 U/L "
                   "(4.0x ULN)",
                [alert("alert.tdm1-ebc.platelets-hold", "hold", review_required=True),
                 alert("alert.tdm1-ebc.alt-hold", review_required=True)],
                "Early setting uses the KATHERINE table (unverified -> review_required): platelets 25 to <75 "
                "hold, ALT >3-20x hold; MBC grade alerts do not apply; info.on-therapy is metastatic only "
                "(spec §4, §5).")


@scenario
def tdm1_ebc_ast_grade2():
    c = ebc_on_tdm1("tdm1-ebc-ast-grade2", 11, fresh={"ast": 160})
    return Case(c, "Early breast cancer on adjuvant T-DM1, AST 160 U/L (4.0x ULN), ALT normal",
                [alert("alert.tdm1-ebc.ast-grade2", review_required=True)],
                "KATHERINE table (unverified): AST >3-5x ULN holds until <=grade 1, same dose (spec §5); "
                "bilirubin normal so no Hy's law.")


@scenario
def tdm1_ebc_bilirubin_hold():
    c = ebc_on_tdm1("tdm1-ebc-bilirubin-hold", 11, fresh={"bili": 1.7})
    return Case(c, "Early breast cancer on adjuvant T-DM1, total bilirubin 1.7 mg/dL (1.42x ULN)",
                [alert("alert.tdm1-ebc.bilirubin-hold", review_required=True)],
                "KATHERINE table (unverified): bilirubin >1-2x ULN holds (spec §5). In the MBC table this "
                "would be grade 1 (no alert): the setting matters.")


@scenario
def tdm1_ebc_platelets_grade4():
    c = ebc_on_tdm1("tdm1-ebc-platelets-grade4", 11, fresh={"plt": 20})
    return Case(c, "Early breast cancer on adjuvant T-DM1, platelets 20 x10^3/uL",
                [alert("alert.tdm1-ebc.platelets-grade4", review_required=True)],
                "KATHERINE table (unverified): <25 is grade 4, hold then reduce; it is not also "
                "-platelets-hold, whose range is 25 to <75 (spec §5).")


@scenario
def tdm1_ebc_lvef_hold():
    c = ebc_on_tdm1("tdm1-ebc-lvef-hold", 11, lvef_recent=47)
    return Case(c, "Early breast cancer on adjuvant T-DM1, LVEF 47% (baselines 62% and 61%)",
                [alert("alert.tdm1-ebc.lvef-hold", "hold", review_required=True)],
                "KATHERINE table (unverified): LVEF 45 to <50 with a drop >=10 (14-15) holds; in the MBC "
                "table LVEF 47 would need no action (spec §5).")


@scenario
def tdm1_ebc_ast_grade3():
    c = ebc_on_tdm1("tdm1-ebc-ast-grade3", 11, fresh={"ast": 240, "alt": 30})
    return Case(c, "Early breast cancer on adjuvant T-DM1, AST 240 U/L (6.0x ULN), ALT normal",
                [alert("alert.tdm1-ebc.ast-grade3", review_required=True)],
                "KATHERINE table (unverified): AST >5-20x holds then reduces one level (spec §5).")


@scenario
def tdm1_ebc_bilirubin_discontinue():
    c = ebc_on_tdm1("tdm1-ebc-bilirubin-discontinue", 11, fresh={"bili": 3.0})
    return Case(c, "Early breast cancer on adjuvant T-DM1, total bilirubin 3.0 mg/dL (2.5x ULN), "
                   "AST/ALT normal",
                [alert("alert.tdm1-ebc.bilirubin-discontinue", "discontinue", review_required=True)],
                "KATHERINE table (unverified): bilirubin >2x ULN discontinues (spec §5); transaminases "
                "normal "
                "so no Hy's law.")


@scenario
def tdm1_ebc_lvef_repeat():
    c = ebc_on_tdm1("tdm1-ebc-lvef-repeat", 11, lvef_recent=48, lvef_baselines=(55, 54))
    return Case(c, "Early breast cancer on adjuvant T-DM1, LVEF 48% (baselines 55% and 54%)",
                [alert("alert.tdm1-ebc.lvef-repeat", "repeat", review_required=True)],
                "KATHERINE table (unverified): LVEF 45 to <50 with a drop <10 (6-7): continue, repeat within "
                "3 weeks (spec §5).")


@scenario
def pertuzumab_without_trastuzumab():
    c, _ = mbc_on_first_line_hp("pertuzumab-without-trastuzumab", trastuzumab_last="2026-08-31")
    return Case(c, "HER2+ MBC on P+T maintenance; trastuzumab held (not-done) since 2026-09-21, pertuzumab "
                   "still given",
                [alert("alert.pertuzumab.without-trastuzumab"), ON_THERAPY],
                "On pertuzumab (2026-10-12) with no trastuzumab dose within 42 days (held doses are never "
                "doses given): warning (spec §1, §5); still on a metastatic regimen, stable.")


@scenario
def her2_chf():
    c, _ = mbc_on_first_line_hp("her2-chf", lvefs=(("2026-04-20", 63), ("2026-07-20", 61),
                                                   ("2026-10-20", 55)))
    condition(c, "I50.9", "2026-10-20", text="Heart failure, NYHA class II")
    return Case(c, "HER2+ MBC on P+T maintenance with new symptomatic heart failure (I50.9), LVEF 55%",
                [alert("alert.her2.chf", "discontinue"), ON_THERAPY],
                "Symptomatic heart failure on a HER2-directed drug: discontinue (spec §5). LVEF 55 drop 8: "
                "no LVEF hold rule met.")


@scenario
def trastuzumab_lvef_drop():
    c, _ = mbc_on_first_line_hp("trastuzumab-lvef-drop", lvefs=(("2026-04-20", 63), ("2026-07-20", 58),
                                                                ("2026-10-14", 47)))
    return Case(c, "HER2+ MBC on P+T maintenance, LVEF 63% -> 47% (drop 16 points)",
                [alert("alert.trastuzumab.lvef-hold", "hold"), ON_THERAPY],
                "Trastuzumab: drop >=16 points holds (spec §5, unverified). Pertuzumab: 47 is not <40 nor "
                "40-45, so no pertuzumab alert.")


@scenario
def pertuzumab_trastuzumab_lvef_hold():
    c, _ = mbc_on_first_line_hp("pertuzumab-trastuzumab-lvef-hold",
                                lvefs=(("2026-04-20", 63), ("2026-07-20", 57), ("2026-10-14", 43)))
    return Case(c, "HER2+ MBC on P+T maintenance, LVEF 63% -> 43% (drop 20 points)",
                [alert("alert.pertuzumab.lvef-hold", "hold"), alert("alert.trastuzumab.lvef-hold", "hold"),
                 ON_THERAPY],
                "Pertuzumab (MBC): 40-45 with drop >=10 holds; trastuzumab: drop >=16 holds (spec §5).")


@scenario
def order_tdm1_lft_baseline():
    c, _ = mbc_progressed_after_thp("order-tdm1-lft-baseline", fresh={"ast": 120, "alt": 38})
    order = draft_order(c, "kadcyla", 3.6, "mg/kg")
    return Case(c, "HER2+ MBC progressed on THP (liver metastases), draft first T-DM1 with AST 120 U/L "
                   "(3.0x)",
                [alert("alert.tdm1.lft-baseline", "review"), alert("alert.tdm1.ast-alt-grade2", "continue")]
                + MBC2,
                "AST >2.5x before the first T-DM1 dose: not studied, review; the same value is grade 2 for "
                "'before this dose' (spec §5, §6). Recommendations as mbc-second-line.", order)


# ---------------------------------------------------------------------------------------------
# Scenarios: T-DXd safety (spec §5).  On second-line T-DXd 5.4 mg/kg, stable.
# ---------------------------------------------------------------------------------------------

TDXD_NOTE = "On second-line T-DXd (MBC) with no progression since it began: info.on-therapy. "


@scenario
def tdxd_ild_history():
    c, _ = mbc_on_second_line("tdxd-ild-history", drug="tdxd", dose=5.4)
    condition(c, "205237003", "2024-06-10", text="Pneumonitis (resolved)", status="resolved",
              abatement="2024-08-19")
    return Case(c, "MBC on T-DXd with a resolved pneumonitis in 2024 (before T-DXd)",
                [alert("alert.tdxd.ild-history", "review"), ON_THERAPY],
                TDXD_NOTE + "Resolved ILD still counts as history (spec §2): review, no safety data "
                            "(spec §5).")


@scenario
def tdxd_ild_after_start():
    c, _ = mbc_on_second_line("tdxd-ild-after-start", drug="tdxd", dose=5.4)
    condition(c, "205237003", "2026-10-26", text="Pneumonitis, suspected T-DXd related")
    return Case(c, "MBC on T-DXd since 2026-04-06, pneumonitis diagnosed 2026-10-26",
                [alert("alert.tdxd.ild", "discontinue", review_required=True), ON_THERAPY],
                TDXD_NOTE + "ILD after T-DXd start: discontinue (grade treated as >=2), review (spec §5). "
                "alert.tdxd.ild-history is NOT expected: the ILD began on T-DXd (see report).")


@scenario
def tdxd_neutropenia_grade3():
    c, _ = mbc_on_second_line("tdxd-neutropenia-grade3", drug="tdxd", dose=5.4, fresh={"anc": 0.8})
    return Case(c, "MBC on T-DXd, ANC 0.8 x10^3/uL",
                [alert("alert.tdxd.neutrophils-grade3", "hold"), ON_THERAPY],
                TDXD_NOTE + "ANC 0.5 to <1.0: interrupt until <=grade 2, same dose (spec §5).")


@scenario
def tdxd_platelets_grade3():
    c, _ = mbc_on_second_line("tdxd-platelets-grade3", drug="tdxd", dose=5.4, fresh={"plt": 35})
    return Case(c, "MBC on T-DXd, platelets 35 x10^3/uL",
                [alert("alert.tdxd.platelets-grade3", "hold"), ON_THERAPY],
                TDXD_NOTE + "25 to <50: interrupt until <=grade 1, same dose (spec §5).")


@scenario
def tdxd_lvef_hold():
    c, _ = mbc_on_second_line("tdxd-lvef-hold", drug="tdxd", dose=5.4, lvef_recent=(55, 38))
    return Case(c, "MBC on T-DXd, LVEF 38%",
                [alert("alert.tdxd.lvef-hold", "hold"), ON_THERAPY],
                TDXD_NOTE + "LVEF <40: interrupt, repeat within 3 weeks (spec §5).")


@scenario
def tdxd_neutropenia_grade4():
    c, _ = mbc_on_second_line("tdxd-neutropenia-grade4", drug="tdxd", dose=5.4, fresh={"anc": 0.4})
    return Case(c, "MBC on T-DXd, ANC 0.4 x10^3/uL",
                [alert("alert.tdxd.neutrophils-grade4", "hold-reduce", review_required=True), ON_THERAPY],
                TDXD_NOTE + "ANC <0.5: interrupt then reduce; unverified in the label text, so "
                            "review_required "
                "(spec §5).")


@scenario
def tdxd_platelets_grade4():
    c, _ = mbc_on_second_line("tdxd-platelets-grade4", drug="tdxd", dose=5.4, fresh={"plt": 22})
    return Case(c, "MBC on T-DXd, platelets 22 x10^3/uL",
                [alert("alert.tdxd.platelets-grade4", "hold-reduce", review_required=True), ON_THERAPY],
                TDXD_NOTE + "<25: interrupt then reduce; unverified, so review_required (spec §5).")


# ---------------------------------------------------------------------------------------------
# Scenarios: monitoring data gaps (spec §7)
# ---------------------------------------------------------------------------------------------


def mbc_on_second_line_with_labs_on(name, date):
    """mbc_on_second_line with the pre-dose labs drawn on `date` instead of 2026-10-31."""
    c, bc = mbc_on_second_line(name, fresh={"plt": None, "ast": None, "alt": None, "bili": None, "anc": None})
    labs(c, date)
    return c, bc


@scenario
def gap_labs_stale():
    c, _ = mbc_on_second_line_with_labs_on("gap-labs-stale", "2026-10-26")
    return Case(c, "MBC on T-DM1, last CBC and liver panel drawn 2026-10-26 (6 days before as-of)",
                [only("gap.labs-missing"), ON_THERAPY],
                TDM1_NOTE + "Labs older than lab_recency_days (3): gap.labs-missing naming platelets, "
                            "AST, ALT, "
                "bilirubin (spec §7).")


@scenario
def gap_labs_missing_anc():
    c, _ = mbc_on_second_line("gap-labs-missing-anc", drug="tdxd", dose=5.4, baseline_anc=None,
                              fresh={"anc": None})
    return Case(c, "MBC on T-DXd, fresh platelets and liver panel but no neutrophil count at all",
                [only("gap.labs-missing"), ON_THERAPY],
                TDXD_NOTE + "T-DXd needs ANC too: gap.labs-missing naming ANC (spec §7).")


@scenario
def gap_uln_missing():
    c, _ = mbc_on_second_line("gap-uln-missing", fresh={"ast_range": False})
    return Case(c, "MBC on T-DM1, fresh AST result without referenceRange",
                [only("gap.uln-missing"), ON_THERAPY],
                TDM1_NOTE + "ULN comes only from the result's own referenceRange, never a constant: "
                "gap.uln-missing (spec §2, §7). Not gap.labs-missing: the AST is present and fresh.")


@scenario
def gap_unit_unrecognized():
    c, _ = mbc_on_second_line("gap-unit-unrecognized", fresh={"bili": 0.8, "bili_unit": "mg%",
                                                              "bili_ucum": False})
    return Case(c, "MBC on T-DM1, fresh bilirubin reported as 0.8 'mg%' (no UCUM code)",
                [only("gap.unit-unrecognized"), ON_THERAPY],
                TDM1_NOTE + "'mg%' is not a listed spelling: value unusable, never guessed -> "
                "gap.unit-unrecognized (spec §1, §9). Not gap.labs-missing (see report).")


@scenario
def gap_weight_missing():
    c, _ = mbc_on_second_line("gap-weight-missing", weight_date="2026-09-14")
    return Case(c, "MBC on T-DM1 (doses written in mg/kg), last weight 2026-09-14 (48 days)",
                [only("gap.weight-missing"), ON_THERAPY],
                TDM1_NOTE + "No weight within weight_recency_days (30): gap.weight-missing (spec §2, §7).")


@scenario
def gap_lvef_overdue():
    c, _ = mbc_on_first_line_hp("gap-lvef-overdue", lvefs=(("2026-04-20", 63), ("2026-07-20", 61)))
    return Case(c, "HER2+ MBC on P+T maintenance, last LVEF 2026-07-20 (104 days)",
                [only("gap.lvef-overdue"), ON_THERAPY],
                "On trastuzumab/pertuzumab with no LVEF within lvef_interval_days (91): gap.lvef-overdue "
                "(spec §7); stable, so info.on-therapy.")


@scenario
def gap_lvef_no_baseline():
    c, _ = mbc_on_first_line_hp("gap-lvef-no-baseline", lvefs=(("2026-07-20", 61), ("2026-10-14", 60)))
    return Case(c, "HER2+ MBC on first-line THP, recent LVEF but none before the regimen began",
                [only("gap.lvef-overdue"), ON_THERAPY],
                "No LVEF within 91 days before 2026-04-27: no baseline -> gap.lvef-overdue (spec §2, §7).")


# ---------------------------------------------------------------------------------------------
# Scenarios: draft orders (spec §6)
# ---------------------------------------------------------------------------------------------


@scenario
def order_tdxd_second_line():
    c, _ = mbc_progressed_after_thp("order-tdxd-second-line", birth="1979-06-02")
    procedure(c, "236886002", "Hysterectomy (procedure)", "2019-05-13")
    order = draft_order(c, "tdxd", 389, "mg")
    return Case(c, "mbc-second-line patient (47, hysterectomy) with a draft T-DXd 389 mg (5.4 mg/kg x 72 kg)",
                MBC2,
                "Correct dose (389/72 = 5.40 mg/kg), fresh labs incl. ANC, LVEF, weight: no order finding. "
                "Hysterectomy removes reproductive potential: no pregnancy alert. The draft is not history: "
                "progression on THP stands, recommendations as mbc-second-line (spec §1, §6).", order)


@scenario
def order_pregnancy_unverified():
    c, _ = mbc_untreated("order-pregnancy-unverified", birth="1988-02-09", met="C78.01")
    pregnancy_test(c, "2026-10-10")
    order = draft_order(c, "trastuzumab", 8, "mg/kg")
    return Case(c, "38-year-old with de novo HER2+ MBC, draft trastuzumab 8 mg/kg loading; last negative "
                   "pregnancy test 22 days ago",
                [alert("alert.pregnancy-unverified")] + MBC1,
                "Female 12-55 without menopause/hysterectomy ordering a HER2 drug, no negative test within 7 "
                "days: alert.pregnancy-unverified (spec §5). 8 mg/kg q3w is the loading level. Draft alone "
                "is not a regimen given: first-line recommendations still fire.", order)


@scenario
def order_tdm1_platelets_baseline():
    c, _ = mbc_progressed_after_thp("order-tdm1-platelets-baseline", birth="1974-03-30",
                                    fresh={"plt": 88})
    condition(c, "76498008", "2023-09-01", text="Postmenopausal state")
    order = draft_order(c, "kadcyla", 3.6, "mg/kg")
    return Case(c, "Postmenopausal 52-year-old progressed on THP, draft first T-DM1 3.6 mg/kg, platelets 88",
                [alert("alert.tdm1.platelets-baseline", "review")] + MBC2,
                "Platelets <100 before the first T-DM1 dose: review, not studied (spec §5). Documented "
                "postmenopausal: no pregnancy alert. Recommendations as mbc-second-line.", order)


@scenario
def order_tdm1_dose_out_of_range():
    c, _ = mbc_on_second_line("order-tdm1-dose-out-of-range")
    order = draft_order(c, "kadcyla", 4.8, "mg/kg")
    return Case(c, "MBC on T-DM1 3.6 mg/kg, draft next dose written as 4.8 mg/kg",
                [only("order.dose-out-of-range", severity="critical"), ON_THERAPY],
                "4.8 > 3.6 (+5%): above the highest level -> critical; 4.8 is not within 5% of any "
                "other HER2 "
                "drug level, so no name confusion (spec §6).", order)


@scenario
def order_tdm1_name_confusion():
    c, _ = mbc_on_first_line_hp("order-tdm1-name-confusion")
    order = draft_order(c, "tdm1", 6, "mg/kg")
    return Case(c, "Patient on trastuzumab + pertuzumab maintenance; draft 'ado-trastuzumab emtansine' "
                   "6 mg/kg",
                [only("order.name-confusion", severity="critical"),
                 only("order.dose-out-of-range", severity="critical"), ON_THERAPY],
                "6 mg/kg is outside every T-DM1 level and equals the trastuzumab maintenance dose: "
                "name-confusion, do not substitute; it is also above T-DM1's highest level (spec §6). "
                "Fresh labs/LVEF/weight: no T-DM1 gap.", order)


@scenario
def order_code_text_conflict():
    c, _ = mbc_on_first_line_hp("order-code-text-conflict")
    med = {"coding": [coding(RXNORM, "1371046", "Kadcyla")], "text": "Trastuzumab (Herceptin) 6 mg/kg IV"}
    order = draft_order(c, None, 6, "mg/kg", med=med)
    return Case(c, "Patient on trastuzumab + pertuzumab; draft coded Kadcyla 1371046 but text says "
                   "trastuzumab",
                [only("order.name-confusion", severity="critical"), ON_THERAPY],
                "Code and text name different HER2 agents: name-confusion and the engine does not choose "
                "one, so no dose-level check (spec §6).", order)


@scenario
def order_tdm1_reescalation():
    doses = ([(d, 245, "mg") for d in every("2026-04-06", 4)]
             + [(d, 204, "mg") for d in every("2026-07-20", 5)])
    c, _ = mbc_on_second_line("order-tdm1-reescalation", doses=doses)
    med_admin(c, "kadcyla", "2026-06-29", 245, "mg", status="not-done",
              reason="Held: AST/ALT grade 3 (AST 236 U/L, ALT 301 U/L on 2026-06-26)")
    labs(c, "2026-06-26", plt=170, ast=236, alt=301, bili=0.9)
    order = draft_order(c, "kadcyla", 245, "mg")
    return Case(c, "MBC on T-DM1 reduced 3.6 -> 3.0 mg/kg after grade 3 transaminases; draft 245 mg "
                   "(3.6 mg/kg)",
                [only("order.dose-reescalation", severity="critical"), ON_THERAPY],
                "Weight 68 kg: 245 mg = 3.60 mg/kg, last given 204 mg = 3.0 mg/kg (reduced level); "
                "ordering above the last reduced level: re-escalation, critical (spec §6). Old grade 3 "
                "labs are superseded by normal fresh labs.", order)


@scenario
def order_her2_not_positive():
    c, _ = mbc_her2_not_positive("order-her2-not-positive", "1+", er=False, pr=False, prior="paclitaxel")
    lvef(c, "2026-10-20", 60)
    labs(c, "2026-10-30")
    order = draft_order(c, "kadcyla", 3.6, "mg/kg")
    return Case(c, "HER2-low (IHC 1+) MBC after paclitaxel, draft Kadcyla 3.6 mg/kg",
                [only("order.her2-not-positive", severity="critical"),
                 rec("rec.her2low.tdxd", "consider", "t-dxd")],
                "T-DM1 for a patient not HER2-positive: critical (T-DXd would be allowed for HER2-low) "
                "(spec §6); HER2-low after chemo still gets the DB-04 recommendation.", order)


@scenario
def order_ebc_tdm1_cycle_15():
    c = ebc_on_tdm1("order-ebc-tdm1-cycle-15", 14)
    order = draft_order(c, "kadcyla", 3.6, "mg/kg")
    return Case(c, "Early breast cancer, 14 adjuvant T-DM1 cycles given, draft for a 15th",
                [alert("alert.ebc.cycles")],
                "KATHERINE is 14 cycles: an order beyond 14 T-DM1 cycles fires alert.ebc.cycles (spec §5). "
                "Labs, LVEF, weight complete; early setting so no info.on-therapy.", order)


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

PLAIN = re.compile(r"[a-z0-9][a-z0-9.+\-]*")


def yaml_scalar(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    if PLAIN.fullmatch(text) and text not in ("null", "true", "false", "yes", "no", "on", "off", "y", "n"):
        return text
    return json.dumps(text, ensure_ascii=False)


def sidecar_yaml(name, case):
    lines = [f"scenario: {yaml_scalar(case.title)}",
             f'as_of: "{AS_OF}"',
             f"order: {yaml_scalar(f'orders/{name}.order.json' if case.order else None)}"]
    if case.findings:
        lines.append("findings:")
        for finding in case.findings:
            first = True
            for key, value in finding.items():
                lines.append(f"  {'- ' if first else '  '}{key}: {yaml_scalar(value)}")
                first = False
    else:
        lines.append("findings: []")
    lines.append("notes: >")
    lines.extend("  " + line for line in textwrap.wrap(case.notes, 98))
    return "\n".join(lines) + "\n"


def to_json(obj):
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def main():
    written = set()
    for fn in SCENARIOS:
        case = fn()
        name = case.chart.name
        assert name not in {p.name.split(".")[0] for p in written}, f"duplicate scenario {name}"
        codes = [f["code"] for f in case.findings]
        assert len(codes) == len(set(codes)), f"{name}: duplicate finding code"
        files = {OUT_DIR / f"{name}.json": to_json(case.chart.bundle()),
                 OUT_DIR / f"{name}.expected.yaml": sidecar_yaml(name, case)}
        if case.order:
            files[ORDER_DIR / f"{name}.order.json"] = to_json(case.order)
        for path, text in files.items():
            write(path, text)
            written.add(path)
    # remove outputs of scenarios that no longer exist (only the generated file patterns)
    for pattern_dir, patterns in ((OUT_DIR, ("*.json", "*.expected.yaml")), (ORDER_DIR, ("*.order.json",))):
        for pattern in patterns:
            for path in pattern_dir.glob(pattern):
                # rw-* files belong to realworld.py (the realistic-variation corpus)
                if path not in written and not path.name.startswith("rw-"):
                    path.unlink()
    print(f"wrote {len(SCENARIOS)} scenarios to {OUT_DIR}")


if __name__ == "__main__":
    main()
