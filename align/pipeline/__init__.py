"""The pipeline's parts: persisted step state, progress line, stage wiring, report."""
