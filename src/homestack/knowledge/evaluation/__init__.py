"""Retrieval quality on BEIR datasets: the run and the ranking metrics."""
