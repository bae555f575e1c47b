"""Cited answers from a collection, plain and as OpenAI chat completions."""
