"""MIMIC-CXR report sections, found as MIT-LCP's ``section_parser`` finds them.

The paper's code took each report's text from a CSV sectioned by that parser, so the findings /
impression / last-paragraph choice here follows the same header rules. The parser's hand-made overrides
for a few dozen malformed real reports are not applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_HEADER = re.compile(r"\n ([A-Z ()/,-]+):\s")
# Header spellings of the real reports that the sectioning maps to another section.
_SECTION_ALIASES = {
    "reason for examination": "indication",
    "reason for exam": "indication",
    "clinical indication": "indication",
    "idication": "indication",
    "clinical information": "history",
    "pfi": "history",
    "exam": "examination",
    "type of examination": "examination",
    "reference exam": "comparison",
    "conclusion": "impression",
    "ndication": "impression",
    "recommendation(s)": "recommendations",
    "recommendation": "recommendations",
    "wetread": "wet read",
    "finding": "findings",
    "findins": "findings",
    "findindgs": "findings",
    "findgings": "findings",
    "findngs": "findings",
    "findnings": "findings",
    "finidngs": "findings",
    "impresson": "impression",
    "imprression": "impression",
    "imoression": "impression",
    "impressoin": "impression",
    "imprssion": "impression",
    "impresion": "impression",
    "imperssion": "impression",
    "mpression": "impression",
    "impession": "impression",
    "comparision": "comparison",
    "comparsion": "comparison",
    "comparrison": "comparison",
    "comparisions": "comparison",
}
_MAIN_SECTIONS = ("impression", "findings", "history", "comparison", "addendum")  # matched inside a header
# A header describing the views ("PA AND LATERAL CHEST:") introduces the findings.
_VIEW_HEADER = re.compile(
    "chest|portable|pa and lateral|lateral and pa|ap and lateral|lateral and ap|frontal and|two views|frontal view"
    "|pa view|ap view|one view|lateral view|bone window|frontal upright|frontal semi-upright|ribs|pa and lat"
)


def section_name(header: str) -> str:
    name = header.lower().strip()
    if name in _SECTION_ALIASES:
        return _SECTION_ALIASES[name]
    for main in _MAIN_SECTIONS:
        if main in name:
            return main
    return "findings" if _VIEW_HEADER.search(name) else name


def split_sections(text: str) -> list[tuple[str, str]]:
    """(section name, text) in order. Text before the first header is the preamble; a header's text runs
    to the next header found after the header's own line. Without findings or impression, the last
    section's paragraphs after its first become the ``last_paragraph`` section."""
    header = _HEADER.search(text)
    if header is None:
        sections = [("full report", text)]
    else:
        sections = [("preamble", text[: header.start(1)])]
        while header:
            start = header.end()
            line_end = text.find("\n", start)
            following = _HEADER.search(text, line_end if line_end != -1 else start)
            sections.append(
                (section_name(header.group(1)), text[start : following.start() if following else len(text)])
            )
            header = following
    sections = [
        (name, body) for name, body in sections if name not in ("findings", "impression") or body.strip()
    ]
    names = {name for name, _ in sections}
    if "findings" not in names and "impression" not in names and "\n \n" in sections[-1][1]:
        name, body = sections[-1]
        first, *others = body.split("\n \n")
        sections[-1] = (name, first)
        sections.append(("last_paragraph", "\n \n".join(others)))
    return sections


@dataclass(frozen=True)
class ReportText:
    findings: str | None
    impression: str | None
    last_paragraph: str | None

    @property
    def report(self) -> str | None:
        return self.findings or self.impression or self.last_paragraph


def parse_report(text: str) -> ReportText:
    """The last findings, impression and last-paragraph sections, whitespace collapsed (lines in the files
    are wrapped at 78 columns); a section with no text counts as absent."""
    last = {name: body for name, body in split_sections(text)}

    def clean(name: str) -> str | None:
        return " ".join(last.get(name, "").split()) or None

    return ReportText(clean("findings"), clean("impression"), clean("last_paragraph"))


def parse_report_file(path: Path) -> tuple[str | None, str | None, str | None, str | None]:
    """(findings, impression, report text, problem) of one report file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, None, None, f"report {path.name} cannot be read: {exc}"
    parsed = parse_report(text)
    return parsed.findings, parsed.impression, parsed.report, None
