"""contrastlab.temperature."""
