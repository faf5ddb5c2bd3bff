"""Stage 5: the instruction corpus (paper Section 3.1, Table 1).

- ``templates``: question/answer phrasings per task family; ``table``: Table 1 as config.
- ``builders``: source tables -> samples per task; ``engine``: samples -> rows, the one template engine.
- ``build``: one partition (Table 1 row) or the evaluation sets, written by ``shards``.
- ``catalog`` (DuckDB views), ``llava`` (LLaVA-NeXT JSON), ``checks``, ``report`` (Table 1 in Markdown).
"""
