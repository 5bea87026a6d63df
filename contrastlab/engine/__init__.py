"""contrastlab.engine."""
