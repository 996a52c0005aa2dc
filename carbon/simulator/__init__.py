"""The in-browser mini-program simulator (``/simulator``), served only while the WeChat sandbox is on."""
