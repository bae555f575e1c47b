"""The knowledge service: collections of cited documents, hybrid search, answers.

`core` is the service's state; `service/` serves it over HTTP, `ingest/` turns
files into chunks and vectors, `stores/` keeps them, `answering/` writes cited
answers, `evaluation/` measures retrieval, `client/` is the CLI and its HTTP client.
"""
