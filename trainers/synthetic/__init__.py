"""Synthetic experiments without a model (the heavy-tailed noise simulation)."""
