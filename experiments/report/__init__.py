"""Reporting: tables, statistics, figures and the HTML report, read from a results folder.

``table``, ``stats``, ``pairwise``, ``verdicts`` (better / worse / equivalent / inconclusive),
``power``, ``reproduction`` (a re-run against its record), ``figure_layout`` (fit to print),
``scoring``, ``ranking``, ``score_table``, ``figure_data``
(what the figures read, when they draw), ``figures``, ``score_figures``, ``learner_styles``,
``tuning``, ``tuning_cost`` (tuning cost and edge flags), ``tuning_arms`` (the hand-picked
arm against the tuned rows), ``tuning_figures``, ``html``, ``escape`` (labels made safe for a
terminal, LaTeX and CSV). Imports ``store`` and ``plan``.
"""
