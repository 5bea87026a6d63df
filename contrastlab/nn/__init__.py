"""contrastlab.nn."""
