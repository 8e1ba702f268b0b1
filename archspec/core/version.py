"""What archspec is called and which release it is (pyproject.toml reads __version__ here)."""

__version__ = "0.2.0"
DISTRIBUTION = "archspec-nn"  # pip install archspec-nn; PyPI's "archspec" is another project
