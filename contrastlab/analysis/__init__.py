"""contrastlab.analysis."""
