"""Accounts: sign-in with throttling against password guessing, sign-out."""
