"""Thin Dagster asset definitions, one module per stage; the logic lives in ``radvlm_pipeline``."""
