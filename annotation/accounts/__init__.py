"""Accounts: sign-in with throttling against password guessing, sign-out, password reset by e-mail."""
