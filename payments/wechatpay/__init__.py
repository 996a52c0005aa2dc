"""WeChat Pay API v3, direct merchant, mini-program (JSAPI) payments, public-key mode."""
