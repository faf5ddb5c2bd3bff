"""The check every conversation answer must pass, whoever wrote it (an LLM or the offline composer).

A JSON list of 5-10 rounds (10-20 turns) alternating human/gpt, and every coordinate in it one of the
boxes given: a model that invents a box would teach the fine-tuned model to invent them too.
"""

from __future__ import annotations

import json
import re

from radvlm_pipeline.boxes import format_box, parse_boxes
from radvlm_pipeline.llm.attempts import RejectedAnswer
from radvlm_pipeline.llm.conversation_vocabulary import MAX_ROUNDS, MIN_ROUNDS


class InvalidConversation(RejectedAnswer):
    """A conversation answer that fails the check (asked again, then quarantined)."""


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)
_ROLE_NAMES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt"}


def parse_conversation(
    text: str | None, finish_reason: str | None, allowed_boxes: set[str], grounded: bool
) -> list[dict]:
    """The turns as ``{"from": "human"|"gpt", "value": str}``, or InvalidConversation with the reason."""
    if finish_reason == "length":
        raise InvalidConversation("truncated", "the answer hit max_tokens and was cut off")
    stripped = (text or "").strip()
    fenced = _FENCE.match(stripped)
    try:
        turns = json.loads(fenced.group(1) if fenced else stripped)
    except json.JSONDecodeError as exc:
        raise InvalidConversation("invalid_json", f"the answer is not JSON: {exc}") from None
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise InvalidConversation("not_a_list_of_turns", "the answer is not a JSON list of turn objects")
    normalised = []
    for index, turn in enumerate(turns):
        role = _ROLE_NAMES.get(str(turn.get("from", "")).lower())
        value = turn.get("value")
        if role is None or not isinstance(value, str) or not value.strip():
            raise InvalidConversation(
                "bad_turn", f"turn {index + 1} lacks a known 'from' or a non-empty 'value'"
            )
        if role != ("human" if index % 2 == 0 else "gpt"):
            raise InvalidConversation("turns_not_alternating", f"turn {index + 1} is '{role}' out of order")
        if "<image>" in value:
            raise InvalidConversation("image_token", f"turn {index + 1} contains '<image>'")
        normalised.append({"from": role, "value": value.strip()})
    rounds, odd = divmod(len(normalised), 2)
    if odd or not MIN_ROUNDS <= rounds <= MAX_ROUNDS:
        raise InvalidConversation(
            "wrong_length",
            f"{len(normalised)} turns; expected {2 * MIN_ROUNDS}-{2 * MAX_ROUNDS} "
            "alternating turns ending with the assistant",
        )
    cited = {format_box(box) for turn in normalised for box in parse_boxes(turn["value"])}
    unknown = sorted(cited - allowed_boxes)
    if unknown:
        raise InvalidConversation(
            "unknown_box", f"coordinates {', '.join(unknown)} were not among the boxes given"
        )
    if grounded and not cited:
        raise InvalidConversation(
            "no_box_cited", "a grounded conversation must answer at least one 'where' with a box"
        )
    return normalised
