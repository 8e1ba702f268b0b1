"""The field types kinds declare their fields with (archspec.registry.fields).

A public module, kept where the documentation has always put it."""

from .registry.fields import *  # noqa: F403
