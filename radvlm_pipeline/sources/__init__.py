"""One reader per dataset, each turning a released layout into the canonical tables of ``schema.py``."""
