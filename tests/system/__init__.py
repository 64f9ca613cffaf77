"""Whole-system tests: real processes, crashes, outages, load, scale-out, the Compose file."""
