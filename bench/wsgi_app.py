# SPDX-License-Identifier: MIT
# Workload 8's application: the smallest useful WSGI app, served by `gunicorn -w 2 -k sync`
# (bench/run.py starts it with --chdir bench wsgi_app:app). Every request gets "ok\n".
BODY = b"ok\n"


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]
