"""Tests of the WeChat sandbox (wechat/sandbox), over real HTTP."""
