"""Dagster resources, chosen per environment at the edge (``build_resources``)."""
