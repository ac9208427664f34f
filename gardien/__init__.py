"""Gardien: the account & organisation GraphQL gateway."""

__version__ = "0.1.0"
