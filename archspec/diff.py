"""Comparing two specs' state_dicts: Diff, compare (archspec.backends.statedicts).

A public module, kept where the documentation has always put it."""

from .backends.statedicts import *  # noqa: F403
