"""Tests of prodtype.serving."""
