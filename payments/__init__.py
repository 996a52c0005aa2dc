"""Money movement: the provider protocol and the WeChat Pay API v3 provider."""
