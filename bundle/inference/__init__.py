"""Inference helpers shared by validation, batch inference and the MONAI Label app."""
