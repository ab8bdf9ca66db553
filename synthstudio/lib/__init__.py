"""Tiny pure helpers with no Django state: environment parsing and the like."""
