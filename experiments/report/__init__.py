"""Reporting: tables, statistics, figures and the HTML report, read from a results folder.

``summary`` (a folder's summary table, computed), ``render`` (the one renderer of the summary and
score tables), ``stats``, ``pairwise``, ``verdicts`` (better / worse / equivalent / inconclusive),
``power``, ``reproduction`` (a re-run against its record), ``figure_layout`` (fit to print),
``scoring``, ``ranking``, ``score_table``, ``figure_data``
(what the figures read, when they draw), ``figures``, ``score_figures``, ``learner_styles``,
``tuning``, ``tuning_cost`` (tuning cost and edge flags), ``tuning_arms`` (the hand-picked
arm against the tuned rows), ``tuning_figures``, ``html``, ``escape`` (text made safe for
each output format). Imports ``store`` and ``plan``.
"""
