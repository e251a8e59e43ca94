"""Molecules in: sources (files, MOSES), SELFIES tokens and vocabulary, the per-molecule
prep work, and training batches."""
