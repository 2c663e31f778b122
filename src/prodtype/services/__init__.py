"""prodtype.services."""
