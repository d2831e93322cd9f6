"""The model registry: versions, signed artifacts, lineage and aliases in Redis."""
