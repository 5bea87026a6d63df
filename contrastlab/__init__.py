"""contrastlab: contrastive representation learning with the temperature as a first-class object.

Data flows one way: images -> views -> encoder -> head -> embeddings -> loss (with a temperature
policy) -> gradients; embeddings -> diagnostics and evaluation. See ``README.md``.
"""

__version__ = "0.1.0"
