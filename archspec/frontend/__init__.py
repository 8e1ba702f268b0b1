"""The front end: safe YAML with positions, expansion (extends, vars, repeat, blocks), validation,
resolution into the IR."""
