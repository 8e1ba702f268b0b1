"""Loading spec files: load_file, load_text, UnreadableFile (archspec.frontend.load).

A public module, kept where the documentation has always put it."""

from .frontend.load import *  # noqa: F403
