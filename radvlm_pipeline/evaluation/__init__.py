"""Stage 7: answers of every model on the evaluation sets, the paper's metrics, and the results tables.

``generation`` stores answers, ``scoring`` turns them into metrics per task (``grounding``,
``classification``, ``report_generation``, ``conversation``), ``baselines`` holds the models compared
(prompted, read and loaded by ``adapters``) and ``results`` renders the paper's Tables 3-6 and Figures 4-5.
Nothing here imports Dagster.
"""
