"""The network: the SELFIES VAE (``vae``), presets, its loss (``loss``), local save/load
(``store``) and the models that ship with molvae (``pretrained``)."""

MODEL_FILE = "model.pt"  # a model folder's weights, config and vocabulary
