"""Shipped organisation files (YAML), read with importlib.resources."""
