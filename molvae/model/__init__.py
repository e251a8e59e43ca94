"""The network: the SELFIES VAE (``vae``), its loss (``loss``) and local save/load (``store``)."""
