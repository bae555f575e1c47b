"""Several hosts, one fleet: other homestack gateways (peers), what they hold, and which one serves a model."""
