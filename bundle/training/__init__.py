"""Training helpers the configs reference: progress logging and per-class metrics."""
