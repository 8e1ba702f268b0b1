"""ShapeError and the helpers shape rules share (archspec.core.shape_rules).

A public module, kept where the documentation has always put it."""

from .core.shape_rules import *  # noqa: F403
