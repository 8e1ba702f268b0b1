"""The built-in kinds, each declared once (see archspec/registry.py). Importing this registers them."""

from . import activations, blocks, layers, merges, structures  # noqa: F401  (each registers its kinds)
