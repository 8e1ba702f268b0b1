"""The reports: the cost table (and markdown, JSON, SARIF, GitHub annotations), diagrams, the
editor schema."""
