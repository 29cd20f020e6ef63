"""Xixin codec package."""
