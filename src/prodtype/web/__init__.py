"""prodtype.web."""
