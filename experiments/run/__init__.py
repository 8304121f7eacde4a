"""One run: the loop, its budget, clock and seeds, and the measurements taken on the way.

``runner`` (the training loop), ``probes`` (FLOPs, peak memory, gradient alignment),
``energy`` (synaptic operations and energy), ``warmup`` (first-use costs paid before timing),
``provenance`` (commit, packages, hardware); what it measures: the measurement catalog
(``plan/catalog.py``). Imports ``plan`` and below.
"""
