"""The recipes that train the shipped demo models (each reproducible by one command)."""
