"""Rendered deploy files: configuration for the tools that run beside homestack."""
