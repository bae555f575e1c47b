"""homestack: one OpenAI-compatible endpoint over a fleet of local model runners."""

__version__ = "0.1.0"
