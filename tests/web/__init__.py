"""Tests of the web page (server-rendered) and of it in a real browser."""
