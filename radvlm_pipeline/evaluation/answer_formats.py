"""Boxes as the baselines write them, converted to the project's normalised ``[x1, y1, x2, y2]``.

CheXagent writes a 0-100 grid inside ``<|box|>`` tags; MAIRA-2 writes 100-bin tokens over the square
its processor centre-crops. Converted here, every grounding metric reads every model the same way.
"""

from __future__ import annotations

import re

_CHEXAGENT_BOX = re.compile(r"<\|box\|>\s*\((\d+)\s*,\s*(\d+)\)\s*,\s*\((\d+)\s*,\s*(\d+)\)\s*<\|/box\|>")


def chexagent_boxes(text: str) -> list[tuple[float, float, float, float]]:
    """CheXagent-2's ``<|box|> (x1,y1),(x2,y2) <|/box|>`` on a 0-100 grid, as normalised boxes."""
    return [tuple(int(value) / 100 for value in match.groups()) for match in _CHEXAGENT_BOX.finditer(text)]


_MAIRA_BOX = re.compile(r"<x(\d+)><y(\d+)><x(\d+)><y(\d+)>")
MAIRA_COORDINATE_BINS = 100


def maira2_boxes(text: str, width: int, height: int) -> list[tuple[float, float, float, float]]:
    """MAIRA-2's box tokens as boxes normalised to the original image.

    Each coordinate token is one of 100 bins over the square the processor centre-crops (side = the
    shorter image side); the bin centre is mapped back through the crop offset to the full image.
    """
    side = min(width, height)
    x_offset, y_offset = (width - side) // 2, (height - side) // 2
    boxes = []
    for match in _MAIRA_BOX.finditer(text):
        x1, y1, x2, y2 = ((int(value) + 0.5) / MAIRA_COORDINATE_BINS for value in match.groups())
        boxes.append(
            (
                (x1 * side + x_offset) / width,
                (y1 * side + y_offset) / height,
                (x2 * side + x_offset) / width,
                (y2 * side + y_offset) / height,
            )
        )
    return boxes
