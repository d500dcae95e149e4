"""Infer tasks: the bundle's models behind MONAI Label's API."""
