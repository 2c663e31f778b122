"""prodtype.ml."""
