"""The core: diagnostics, limits, the IR and the sliding-window formula. Imports nothing else of
archspec."""
