"""contrastlab.metrics."""
