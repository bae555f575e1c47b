"""The HTTP service: routes over the knowledge core, and the process that serves them."""
