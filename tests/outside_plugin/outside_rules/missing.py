"""A rule whose dependency is not installed: bpbench lists it as unavailable, with the reason."""

import outside_rules_dependency_that_is_not_installed  # noqa: F401

from bpbench import Backprop


class NeedsMissingDependency(Backprop):
    pass
