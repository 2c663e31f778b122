"""prodtype.data."""
