"""Virtual models: which fleet models serve a request for a route, in the order to try them."""

from .choice import caller_of, chain, pick

__all__ = ["caller_of", "chain", "pick"]
