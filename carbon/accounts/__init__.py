"""Guests: users keyed by WeChat openid, session tokens, profile."""
