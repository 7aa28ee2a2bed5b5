"""Shared base of the core (lowest layer, Qt-free): errors, progress, limits, text helpers, sample media, quality metrics, the task registry."""
