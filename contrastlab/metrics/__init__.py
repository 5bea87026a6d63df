"""Representation diagnostics: alignment, uniformity, tolerance, effective rank, hardness.

Small functions of embeddings (and labels), chunked so they never need an ``N × N`` tensor.
"""

from contrastlab.metrics.hardness import HardnessResult, hardness
from contrastlab.metrics.representation import alignment, effective_rank, tolerance, uniformity

__all__ = ["HardnessResult", "alignment", "effective_rank", "hardness", "tolerance", "uniformity"]
