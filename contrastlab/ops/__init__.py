"""contrastlab.ops."""
