"""measure and its Costs, Layer and Field rows (archspec.analyses.costs).

A public module, kept where the documentation has always put it."""

from .analyses.costs import *  # noqa: F403
