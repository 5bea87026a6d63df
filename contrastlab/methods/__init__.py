"""contrastlab.methods."""
