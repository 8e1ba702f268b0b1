"""emit_python: standalone PyTorch source for a spec (archspec.backends.emit).

A public module, kept where the documentation has always put it."""

from .backends.emit import *  # noqa: F403
