"""Reporting: tables, statistics, figures and the HTML report, read from a results folder.

``table``, ``stats``, ``figures``, ``html``. Imports ``store`` and ``plan``.
"""
