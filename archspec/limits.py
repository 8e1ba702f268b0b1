"""The limits on the work an input may cause (archspec.core.limits).

A public module, kept where the documentation has always put it."""

from .core.limits import *  # noqa: F403
