"""Diagnostics and their codes (archspec.core.errors).

A public module, kept where the documentation has always put it."""

from .core.errors import *  # noqa: F403
