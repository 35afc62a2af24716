"""The ceiling: the same Falcon + waitress settings as the receiver, answering static responses, no log.

`python bench/ceiling.py --port P` serves `/api/postback` (200, the receiver's JSON answer)
and `/t/{slug}` (302), so the benchmark measures exactly what durability and the
receiver's logic cost on top of the stack.
"""

from __future__ import annotations

import argparse
import logging

import falcon
from waitress.server import create_server

from receiver.server import DEFAULT_THREADS, waitress_options

BODY = b'{"ok":true,"result":"recorded"}'


class StaticPostback:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = BODY
        resp.content_type = falcon.MEDIA_JSON


class StaticRedirect:
    def on_get(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        resp.status = 302
        resp.location = "https://shop.example/land?src=net&click_id=00000000-0000-4000-8000-000000000000"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    args = parser.parse_args()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    app = falcon.App()
    app.add_route("/api/postback", StaticPostback())
    app.add_route("/t/{slug}", StaticRedirect())
    create_server(app, host="127.0.0.1", port=args.port, **waitress_options(args.threads)).run()


if __name__ == "__main__":
    main()
