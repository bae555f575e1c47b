"""The ingest pipeline: parse files, chunk them by tokens, sparse vectors, and walking folders."""
