"""The gateway: an ASGI app over one route table, API surfaces, the proxy to runners, auth and admin."""
