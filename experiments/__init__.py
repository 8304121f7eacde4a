"""How learners are compared: studies, the runner, executors, the results store and tables."""
