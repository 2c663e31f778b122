"""Tests of prodtype.db."""
