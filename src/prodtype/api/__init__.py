"""prodtype.api."""
