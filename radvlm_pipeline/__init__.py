"""radvlm-pipeline domain library: readers, boxes, templates, LLM client, training and metrics.

Nothing in this package imports Dagster, so every piece can be used and tested on its own; the Dagster
asset definitions in ``assets/`` are thin wrappers around these functions.
"""
