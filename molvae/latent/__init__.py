"""The latent space as features: encoded data sets, property regressors, differentiable
surrogates."""
