"""What the per-dataset writers share: seeded randomness, a small model of a patient's findings,
report text, label values, plausible anatomy boxes and synthetic radiographs.

Everything a writer emits about one image (report sentences, CheXpert labels, VinDr classes, boxes, the
pixels) is derived from one ``Case``, so labels agree with reports and boxes sit where the finding is
drawn.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from PIL import Image


class Variant(str, Enum):
    CLEAN = "clean"
    DIRTY = "dirty"  # adds the faults every reader must quarantine (see each writer's ``DIRT``)


@dataclass(frozen=True)
class Fault:
    """Where a fault of the dirty sample lies, for the tests to find it in the reader's quarantine."""

    file: str  # relative to the dataset root
    row: int  # numbered as in the quarantine table
    reason: str | None  # the quarantine reason a reader must give; None where it can repair the row


# MIMIC-CXR-JPG 2.0.0's study count: the unit of the paper-scale writers, which size every dataset by
# its real proportion to it.
PAPER_MIMIC_STUDIES = 227_835


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """A generator derived from the seed and a path of keys: independent of call order elsewhere."""
    digest = hashlib.sha256(repr((seed, *keys)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


# --- Anatomy ----------------------------------------------------------------------------------------
# Normalised [x1, y1, x2, y2] of regions on a frontal radiograph (patient's right on the image left),
# named as Chest ImaGenome names them. Jittered per image by ``region_box``.
REGIONS: dict[str, tuple[float, float, float, float]] = {
    "right lung": (0.10, 0.16, 0.47, 0.82),
    "left lung": (0.53, 0.16, 0.90, 0.82),
    "right upper lung zone": (0.12, 0.18, 0.46, 0.38),
    "right mid lung zone": (0.11, 0.38, 0.46, 0.58),
    "right lower lung zone": (0.10, 0.58, 0.46, 0.80),
    "left upper lung zone": (0.54, 0.18, 0.88, 0.38),
    "left mid lung zone": (0.54, 0.38, 0.89, 0.58),
    "left lower lung zone": (0.54, 0.58, 0.90, 0.80),
    "right apical zone": (0.16, 0.14, 0.42, 0.26),
    "left apical zone": (0.58, 0.14, 0.84, 0.26),
    "right hilar structures": (0.32, 0.36, 0.46, 0.52),
    "left hilar structures": (0.54, 0.36, 0.68, 0.52),
    "right costophrenic angle": (0.10, 0.72, 0.24, 0.84),
    "left costophrenic angle": (0.76, 0.72, 0.90, 0.84),
    "right hemidiaphragm": (0.10, 0.70, 0.47, 0.82),
    "left hemidiaphragm": (0.53, 0.72, 0.90, 0.84),
    "cardiac silhouette": (0.40, 0.45, 0.74, 0.78),
    "mediastinum": (0.38, 0.18, 0.62, 0.72),
    "upper mediastinum": (0.40, 0.16, 0.60, 0.40),
    "trachea": (0.46, 0.04, 0.54, 0.34),
    "carina": (0.46, 0.30, 0.54, 0.38),
    "aortic arch": (0.50, 0.26, 0.62, 0.36),
    "svc": (0.40, 0.22, 0.48, 0.42),
    "cavoatrial junction": (0.40, 0.40, 0.48, 0.48),
    "spine": (0.46, 0.02, 0.54, 0.98),
    "right clavicle": (0.14, 0.10, 0.46, 0.20),
    "left clavicle": (0.54, 0.10, 0.86, 0.20),
    "abdomen": (0.20, 0.84, 0.80, 0.99),
    "right atrium": (0.40, 0.52, 0.52, 0.74),
}


def region_box(
    name: str, rng: np.random.Generator, jitter: float = 0.02
) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = REGIONS[name]
    dx, dy = rng.uniform(-jitter, jitter, size=2)
    box = np.clip(np.array([x1 + dx, y1 + dy, x2 + dx, y2 + dy]), 0.0, 1.0)
    return tuple(float(v) for v in box)


# --- Findings ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    key: str
    chexpert: tuple[str, ...]  # CheXpert labels it makes positive
    vindr: str | None  # VinDr-CXR local class, if it has one
    regions: tuple[str, ...]  # where it can sit (one is chosen per case)
    sentences: tuple[str, ...]  # "{side}" is replaced by the side of the chosen region
    negative: str  # the sentence a normal report uses for it
    uncertain: str  # the hedged sentence that gives a -1.0 label
    intensity: float  # how it is drawn: > 0 brighter (opacity), < 0 darker (air)


FINDINGS: tuple[Finding, ...] = (
    Finding(
        "cardiomegaly",
        ("Cardiomegaly", "Enlarged Cardiomediastinum"),
        "Cardiomegaly",
        ("cardiac silhouette",),
        ("The heart is moderately enlarged.", "Cardiomegaly is present."),
        "The heart size is normal.",
        "The heart size is borderline enlarged.",
        0.25,
    ),
    Finding(
        "effusion",
        ("Pleural Effusion",),
        "Pleural effusion",
        ("right costophrenic angle", "left costophrenic angle"),
        (
            "There is a small {side} pleural effusion.",
            "Blunting of the {side} costophrenic angle reflects a small effusion.",
        ),
        "There is no pleural effusion.",
        "A trace {side} pleural effusion is possible.",
        0.45,
    ),
    Finding(
        "pneumothorax",
        ("Pneumothorax",),
        "Pneumothorax",
        ("right apical zone", "left apical zone"),
        ("There is a small {side} apical pneumothorax.",),
        "There is no pneumothorax.",
        "A tiny {side} apical pneumothorax cannot be excluded.",
        -0.35,
    ),
    Finding(
        "consolidation",
        ("Consolidation", "Lung Opacity"),
        "Consolidation",
        ("right lower lung zone", "left lower lung zone"),
        ("Focal consolidation is seen in the {side} lower lobe.",),
        "There is no focal consolidation.",
        "Subtle {side} basilar opacity may reflect early consolidation.",
        0.4,
    ),
    Finding(
        "atelectasis",
        ("Atelectasis", "Lung Opacity"),
        "Atelectasis",
        ("right lower lung zone", "left lower lung zone"),
        (
            "Linear opacity at the {side} base is consistent with atelectasis.",
            "There is {side} basilar atelectasis.",
        ),
        "There is no atelectasis.",
        "Minimal {side} basilar atelectasis is possible.",
        0.3,
    ),
    Finding(
        "edema",
        ("Edema", "Lung Opacity"),
        "Edema",
        ("right mid lung zone", "left mid lung zone"),
        ("There is mild pulmonary vascular congestion and interstitial edema.",),
        "There is no pulmonary edema.",
        "Mild interstitial edema is not excluded.",
        0.25,
    ),
    Finding(
        "pneumonia",
        ("Pneumonia", "Lung Opacity"),
        "Infiltration",
        ("right lower lung zone", "left lower lung zone", "right mid lung zone"),
        ("Patchy {side} opacity is concerning for pneumonia.",),
        "There is no evidence of pneumonia.",
        "Pneumonia cannot be excluded at the {side} base.",
        0.35,
    ),
    Finding(
        "nodule",
        ("Lung Lesion",),
        "Nodule/Mass",
        ("right upper lung zone", "left upper lung zone", "right mid lung zone"),
        ("A 1.5 cm nodule projects over the {side} upper lung.", "There is a rounded {side} lung nodule."),
        "No pulmonary nodules are seen.",
        "A possible small {side} nodule is noted.",
        0.5,
    ),
    Finding(
        "fracture",
        ("Fracture",),
        "Rib fracture",
        ("right mid lung zone", "left mid lung zone"),
        ("There is a displaced fracture of a {side} lateral rib.",),
        "No acute fracture is seen.",
        "A {side} rib fracture is questioned.",
        0.2,
    ),
    Finding(
        "pleural_thickening",
        ("Pleural Other",),
        "Pleural thickening",
        ("right apical zone", "left apical zone"),
        ("There is {side} apical pleural thickening.",),
        "There is no pleural thickening.",
        "Possible {side} apical pleural thickening.",
        0.3,
    ),
    Finding(
        "aortic_enlargement",
        (),
        "Aortic enlargement",
        ("aortic arch",),
        ("The aortic knob is enlarged and tortuous.",),
        "The aorta is unremarkable.",
        "The aortic arch may be mildly enlarged.",
        0.3,
    ),
    Finding(
        "device",
        ("Support Devices",),
        None,
        ("svc",),
        (
            "A right internal jugular central line terminates in the SVC.",
            "An endotracheal tube is in standard position.",
        ),
        "There are no lines or tubes.",
        "A line of uncertain position projects over the mediastinum.",
        0.6,
    ),
)

FINDINGS_BY_KEY = {f.key: f for f in FINDINGS}

PRIOR_SENTENCES = (
    "Compared to the prior radiograph, the {finding} is slightly larger.",
    "The {finding} is unchanged since the previous study.",
    "There has been interval improvement of the {finding} since the prior exam.",
    "As before, there is {finding}.",
    "The {finding} is stable compared with the radiograph from yesterday.",
)
PRIOR_NORMAL_SENTENCES = (
    "No significant change since the prior study.",
    "The cardiomediastinal silhouette is unchanged from the previous exam.",
    "Interval removal of the previously seen nasogastric tube.",
)
NORMAL_SENTENCES = (
    "The lungs are clear.",
    "The cardiomediastinal silhouette is within normal limits.",
    "The hilar contours are normal.",
    "No acute osseous abnormality is seen.",
)
INDICATIONS = (
    "___-year-old {sex_word} with shortness of breath.",
    "___-year-old {sex_word} with fever and cough, evaluate for pneumonia.",
    "History: ___ {sex_word} with chest pain.",
    "Status post line placement, assess position.",
)


@dataclass
class PlacedFinding:
    finding: Finding
    region: str
    box: tuple[float, float, float, float]  # normalised, where it is drawn
    uncertain: bool = False

    @property
    def side(self) -> str:
        return "left" if self.region.startswith("left") else "right"


@dataclass
class Case:
    """One synthetic radiograph: everything a dataset says about it comes from here."""

    sex: str  # "M" or "F"
    age: int
    view: str  # PA, AP, LATERAL, LL
    findings: list[PlacedFinding] = field(default_factory=list)
    negatives: list[Finding] = field(default_factory=list)  # findings the report explicitly denies
    has_prior: bool = False  # the report compares with an earlier study

    @property
    def frontal(self) -> bool:
        return self.view in ("PA", "AP")


def sample_case(
    rng: np.random.Generator,
    lateral_fraction: float = 0.2,
    max_findings: int = 3,
    normal_fraction: float = 0.3,
    uncertain_fraction: float = 0.15,
    prior_fraction: float = 0.5,
) -> Case:
    view = "LATERAL" if rng.random() < lateral_fraction else ("PA" if rng.random() < 0.6 else "AP")
    case = Case(
        sex="M" if rng.random() < 0.5 else "F",
        age=int(rng.integers(20, 90)),
        view=view,
        has_prior=bool(rng.random() < prior_fraction),
    )
    if rng.random() >= normal_fraction:
        count = int(rng.integers(1, max_findings + 1))
        chosen = rng.choice(len(FINDINGS), size=count, replace=False)
        for index in sorted(int(i) for i in chosen):
            finding = FINDINGS[index]
            region = finding.regions[int(rng.integers(len(finding.regions)))]
            case.findings.append(
                PlacedFinding(
                    finding,
                    region,
                    region_box(region, rng, 0.03),
                    uncertain=bool(rng.random() < uncertain_fraction),
                )
            )
    present = {p.finding.key for p in case.findings}
    others = [f for f in FINDINGS if f.key not in present]
    for index in rng.choice(len(others), size=min(3, len(others)), replace=False):
        case.negatives.append(others[int(index)])
    return case


# --- Labels and reports -----------------------------------------------------------------------------
def chexpert_values(case: Case, labels: tuple[str, ...]) -> dict[str, str]:
    """The released value convention: "1.0" present, "-1.0" uncertain, "0.0" explicitly absent,
    "" not mentioned. Agrees with ``report_sections`` for the same case."""
    values = {name: "" for name in labels}
    for negative in case.negatives:
        for name in negative.chexpert:
            values[name] = "0.0"
    for placed in case.findings:
        for name in placed.finding.chexpert:
            if placed.uncertain:
                values[name] = values[name] if values[name] == "1.0" else "-1.0"
            else:
                values[name] = "1.0"
    if not case.findings:
        values["No Finding"] = "1.0"
    return values


@dataclass
class ReportSections:
    indication: str
    comparison: str
    findings: str
    impression: str


def report_sections(case: Case, rng: np.random.Generator) -> ReportSections:
    sex_word = "man" if case.sex == "M" else "woman"
    indication = INDICATIONS[int(rng.integers(len(INDICATIONS)))].format(sex_word=sex_word)
    sentences: list[str] = []
    for placed in case.findings:
        finding = placed.finding
        template = (
            finding.uncertain
            if placed.uncertain
            else finding.sentences[int(rng.integers(len(finding.sentences)))]
        )
        sentences.append(template.format(side=placed.side))
    for negative in case.negatives:
        sentences.append(negative.negative)
    if not case.findings:
        sentences.append(NORMAL_SENTENCES[int(rng.integers(len(NORMAL_SENTENCES)))])
    if case.has_prior:
        if case.findings:
            name = case.findings[0].finding.key.replace("_", " ")
            sentences.insert(
                int(rng.integers(len(sentences) + 1)),
                PRIOR_SENTENCES[int(rng.integers(len(PRIOR_SENTENCES)))].format(finding=name),
            )
        else:
            sentences.append(PRIOR_NORMAL_SENTENCES[int(rng.integers(len(PRIOR_NORMAL_SENTENCES)))])
    comparison = "Chest radiograph from ___." if case.has_prior else "None."
    if case.findings:
        impression = " ".join(
            (p.finding.uncertain if p.uncertain else p.finding.sentences[0]).format(side=p.side)
            for p in case.findings[:2]
        )
    else:
        impression = "No acute cardiopulmonary process."
    return ReportSections(indication, comparison, " ".join(sentences), impression)


# --- Pixels -----------------------------------------------------------------------------------------
def render_radiograph(case: Case, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A float image in [0, 1] (bright = dense): body, dark lungs, heart, spine and the case's findings
    drawn in their boxes. A lateral view gets a different, single-lung silhouette."""
    ys, xs = np.mgrid[0:height, 0:width]
    u, v = xs / max(width - 1, 1), ys / max(height - 1, 1)
    # Texture at 1/8 resolution: looks like soft tissue and keeps the files small (fine noise would
    # not compress, and the whole sample must stay a few MB).
    coarse = rng.standard_normal((height // 8 + 1, width // 8 + 1)).astype(np.float32)
    texture = Image.fromarray(coarse, mode="F").resize((width, height), Image.Resampling.BILINEAR)
    image = 0.55 + 0.05 * np.asarray(texture, dtype=np.float64)
    if case.frontal:
        for cx in (0.29, 0.71):
            lung = ((u - cx) / 0.19) ** 2 + ((v - 0.49) / 0.33) ** 2 < 1
            image[lung] -= 0.35
        heart_half_width = 0.17 if any(p.finding.key == "cardiomegaly" for p in case.findings) else 0.13
        heart = ((u - 0.56) / heart_half_width) ** 2 + ((v - 0.62) / 0.14) ** 2 < 1
        image[heart] += 0.25
        image[np.abs(u - 0.5) < 0.035] += 0.2
        for rib in np.linspace(0.22, 0.74, 7):
            image[np.abs(v - rib - 0.04 * np.cos(u * np.pi * 2)) < 0.008] += 0.08
        for placed in case.findings:
            x1, y1, x2, y2 = placed.box
            blob = ((u - (x1 + x2) / 2) / ((x2 - x1) / 2)) ** 2 + (
                (v - (y1 + y2) / 2) / ((y2 - y1) / 2)
            ) ** 2 < 1
            image[blob] += placed.finding.intensity
    else:
        lung = ((u - 0.5) / 0.3) ** 2 + ((v - 0.5) / 0.35) ** 2 < 1
        image[lung] -= 0.3
        image[np.abs(u - 0.78) < 0.05] += 0.2
    return np.clip(image, 0.0, 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(image * 255).astype(np.uint8)


def to_uint16(image: np.ndarray, bits: int = 12) -> np.ndarray:
    return np.round(image * (2**bits - 1)).astype(np.uint16)
