"""Xixin gateway package."""
