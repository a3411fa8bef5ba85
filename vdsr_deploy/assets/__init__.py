"""Files shipped with the package: the default weights and a sample image."""
