"""The streaming inference worker."""
