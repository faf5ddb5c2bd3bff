"""The check every prior-removal answer must pass: the report with parts deleted, nothing added.

Prior removal only deletes comparisons and history, so a sound answer uses the report's own words and
ends where a sentence ends. An answer cut off mid-sentence, or one with a content word the report does
not have (an invented finding, a "pleural" the radiologist never wrote), would be trained on as a
cleaned report: it is rejected, asked again with another seed, and quarantined if it keeps failing.
"""

from __future__ import annotations

import re

from radvlm_pipeline.llm.attempts import RejectedAnswer
from radvlm_pipeline.llm.calls import LLMResult
from radvlm_pipeline.llm.offline_rules import NOTHING_LEFT

_WORD = re.compile(r"[a-z0-9]+")
# Words a rewrite may need to keep a sentence whole once a comparison is cut out ("there is a ...").
FUNCTION_WORDS = frozenset(
    "a an the there is are was were be been it its this that these those of in on at to with and or but "
    "no not as by for from".split()
)
# A sentence end: a full stop, question or exclamation mark, then closing quotes or brackets.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")
TAIL_WORDS = 3  # how many last words an unpunctuated ending must share with the end of a report sentence


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _base(word: str) -> str:
    """Singular and plural as one word ("effusions", "opacities"): a rewrite may change the number."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def words_not_in_report(answer: str, report: str) -> list[str]:
    """The answer's content words the report does not contain, in the order they first appear."""
    known = {_base(word) for word in _words(report)}
    added = [w for w in _words(answer) if w not in FUNCTION_WORDS and _base(w) not in known]
    return list(dict.fromkeys(added))


def ends_mid_sentence(answer: str, report: str) -> bool:
    """True unless the answer ends with a sentence end, or with the last words of a report sentence that
    has none (a report's last line or a heading often carries no full stop)."""
    if _SENTENCE_END.search(answer.rstrip()):
        return False
    tail = _words(_pieces(answer)[-1])[-TAIL_WORDS:]
    return not tail or not any(_words(piece)[-len(tail) :] == tail for piece in _pieces(report))


def _pieces(text: str) -> list[str]:
    """The text cut where a sentence, clause or line ends."""
    return re.split(r"[.!?:;]|\n", text)


def check_answer(report: str, result: LLMResult) -> str:
    """The cleaned report, ``NOTHING_LEFT``, or RejectedAnswer saying why the answer cannot be used."""
    if result.finish_reason == "length":
        raise RejectedAnswer("truncated", "the answer hit max_tokens and was cut off")
    text = (result.text or "").strip().removeprefix("Answer:").strip()
    if not text:
        raise RejectedAnswer("empty_answer", "the answer is empty")
    if text.rstrip(".").strip().lower() == NOTHING_LEFT.lower():
        return NOTHING_LEFT
    if ends_mid_sentence(text, report):
        raise RejectedAnswer("ends_mid_sentence", f"the answer stops mid-sentence: '…{text[-60:]}'")
    added = words_not_in_report(text, report)
    if added:
        raise RejectedAnswer(
            "words_not_in_report",
            f"prior removal only deletes, but the answer has words the report does not: {', '.join(added[:12])}",
        )
    return text
