"""The knowledge CLI (`homestack knowledge`, `homestack kb`) and its HTTP client."""
