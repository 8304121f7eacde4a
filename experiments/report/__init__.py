"""Reporting: tables, statistics, figures and the HTML report, read from a results folder.

``summary`` (a folder's summary table, computed), ``render`` (the one renderer of the summary and
score tables), ``stats``, ``pairwise``, ``scoring``, ``ranking``, ``score_table``, ``figure_data``
(what the figures read, when they draw), ``figures``, ``score_figures``, ``learner_styles``,
``tuning``, ``tuning_figures``, ``html``. Imports ``store`` and ``plan``.
"""
