"""``python -m wechat.sandbox --host 127.0.0.1 --port 8090 [--appid A --secret S]``."""
from __future__ import annotations

import argparse
import os
import sys

from werkzeug.serving import make_server

from wechat.sandbox import create_sandbox_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wechat.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--appid", help="serve this app instead of the default one (with --secret)")
    parser.add_argument("--secret")
    args = parser.parse_args(argv)
    if os.environ.get("DIANDIAN_ENV") == "production":
        print("wechat.sandbox: refusing to start with DIANDIAN_ENV=production", file=sys.stderr)
        return 2
    if bool(args.appid) != bool(args.secret):
        parser.error("--appid and --secret go together")

    config = {"APPS": {args.appid: args.secret}} if args.appid else None
    server = make_server(args.host, args.port, create_sandbox_app(config), threaded=True)
    print(f"WeChat sandbox listening on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
