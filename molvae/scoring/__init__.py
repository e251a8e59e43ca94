"""Scoring generated molecules: per-molecule features, set metrics (MOSES/GuacaMol), FCD,
cached reference statistics, and the report."""
