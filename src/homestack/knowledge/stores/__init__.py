"""Where chunks live: the store protocol, Qdrant Edge, Qdrant server, and backups."""
