"""The embedded runtime: keyed state, event time, micro-batches and the pipeline loop."""
