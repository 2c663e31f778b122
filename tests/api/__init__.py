"""Tests of prodtype.api."""
