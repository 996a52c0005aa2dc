"""The adapter to WeChat's open APIs (on wechatpy); no business logic."""
