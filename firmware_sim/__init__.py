"""Xixin firmware_sim package."""
