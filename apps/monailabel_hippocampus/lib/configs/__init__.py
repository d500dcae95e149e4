"""Per-task configuration: which bundle models the app serves."""
