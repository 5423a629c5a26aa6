"""A small HTTP server on 127.0.0.1 for download tests, with Range support."""
import http.server
import threading
import time


class LocalServer:
    """Serves ``routes``: path -> bytes, or -> (status, headers, body), or
    -> a callable(handler) that answers the request itself."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, dict(self.headers)))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                elif callable(route):
                    route(self)
                elif isinstance(route, tuple):
                    status, headers, body = route
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header('Content-Length', str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self._send_range(route)

            def _send_range(self, body):
                start = 0
                header = self.headers.get('Range')
                if header and header.startswith('bytes='):
                    start = int(header[6:].split('-')[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header('Content-Length', '0')
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header('Content-Range', 'bytes {}-{}/{}'.format(
                        start, len(body) - 1, len(body)))
                else:
                    self.send_response(200)
                self.send_header('Content-Length', str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       daemon=True)

    def url(self, path):
        return 'http://127.0.0.1:{}{}'.format(self.httpd.server_port, path)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def cut_off_after(body, n):
    """A route that promises the whole body but closes after n bytes."""
    def answer(handler):
        handler.send_response(200)
        handler.send_header('Content-Length', str(len(body)))
        handler.end_headers()
        handler.wfile.write(body[:n])
        handler.wfile.flush()
        handler.close_connection = True
    return answer


def stall(seconds, body=b''):
    """A route that waits before answering, to trigger read timeouts."""
    def answer(handler):
        time.sleep(seconds)
        handler.send_response(200)
        handler.send_header('Content-Length', str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return answer


def closed_port():
    """A 127.0.0.1 port with nothing listening on it."""
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
