"""The front end: the command line, the Python API and what they need alone.

``cli`` (``bpbench ...``), ``api`` (``bpbench.run``), ``results`` (``Results``),
``conformance`` (``bpbench check``), ``scaffold`` (``bpbench new``), ``availability``
(``bpbench list``), ``tuned_run`` (a tuned study's runs with progress), ``tracking/`` (runs
mirrored to MLflow, TensorBoard, W&B: ``--track``, ``bpbench track``), ``templates/`` (the
scaffold's files). Imports every other room.
"""
