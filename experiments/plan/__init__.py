"""Planning: what a study asks for, before anything runs.

study files and built-in studies (``builtin``), typed configuration (``config``), run specs
(``spec``), study expansion and validation (``study``), and the entry-point registry of
learners and tasks (``registry``). Imports only ``bpbench.learners`` and ``bpbench.tasks``.
"""
