"""prodtype.db."""
