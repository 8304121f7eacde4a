"""Planning: what a study asks for, before anything runs.

study files and built-in studies (``builtin``), typed configuration (``config``), run specs
(``spec``), study expansion and validation (``study``), a study's ``[verdict]`` margin
(``verdict``), tuned studies' ``[tuning]`` block and search spaces (``tuning``), the measurement
catalog (``catalog``: what a study asks to measure) and the time-to-target measures
(``time_to_target``), the entry-point registry of learners and tasks (``registry``), and the
built-in study files (``studies/``). Imports only ``bpbench.learners`` and ``bpbench.tasks``.
"""
