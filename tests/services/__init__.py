"""Tests of prodtype.services."""
