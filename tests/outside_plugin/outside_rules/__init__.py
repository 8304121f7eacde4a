"""Learning-rule shapes an outside package registers with bpbench (used by bpbench's tests)."""
