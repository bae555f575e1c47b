"""`homestack eval`: evaluation suites (JSONL) run against models through any OpenAI-compatible URL."""
