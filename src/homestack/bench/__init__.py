"""`homestack bench`: a load generator for any OpenAI-compatible URL, and comparisons of its results."""
