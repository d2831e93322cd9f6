"""The scheduled retraining job and its service."""
