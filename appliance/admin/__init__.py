"""The appliance's admin API (its own listener, bearer token, JSON): see docs/operations.md."""
