"""Latent optimization: objectives, the budgeted oracle, search methods, and results."""
