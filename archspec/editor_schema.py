"""The JSON Schema of the spec format for editors (archspec.reports.editor_schema).

A public module, kept where the documentation has always put it."""

from .reports.editor_schema import *  # noqa: F403
