"""The analyses of the IR: shapes, in place, costs, accepted input sizes, memory fit; `analyze`
runs the pipeline up to them."""
