"""Data: datalists from folders or the synthetic default, and the shared transforms."""
