"""`homestack cost`: cost per million tokens and break-even against cloud APIs."""
