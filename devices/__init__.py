"""Xixin devices package."""
