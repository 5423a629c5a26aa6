"""A small HTTP server on 127.0.0.1 for download tests, with Range support."""
import http.server
import sys
import threading
import time


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that hangs up early (a time-out, a refused download) is
        # what many tests provoke; anything else is still printed.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


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
                start = send_range_headers(self, body)
                if start is not None:
                    self.wfile.write(body[start:])

        self.httpd = _QuietServer(('127.0.0.1', 0), Handler)
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


def send_range_headers(handler, body):
    """Answers a GET of body, honouring a ``Range: bytes=N-`` header: sends
    the status and headers, returns where the body starts, or None after a
    416 (nothing left to send)."""
    start = 0
    header = handler.headers.get('Range')
    if header and header.startswith('bytes='):
        start = int(header[6:].split('-')[0])
        if start >= len(body):
            handler.send_response(416)
            handler.send_header('Content-Range', 'bytes */{}'.format(
                len(body)))
            handler.send_header('Content-Length', '0')
            handler.end_headers()
            return None
        handler.send_response(206)
        handler.send_header('Content-Range', 'bytes {}-{}/{}'.format(
            start, len(body) - 1, len(body)))
    else:
        handler.send_response(200)
    handler.send_header('Content-Length', str(len(body) - start))
    handler.end_headers()
    return start


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


def drip(body, interval, status=200):
    """A route that sends body one byte every interval seconds, as a server
    at the end of a failing link does; it stops when the client leaves."""
    def answer(handler):
        handler.send_response(status)
        handler.send_header('Content-Length', str(len(body)))
        handler.end_headers()
        try:
            for i in range(len(body)):
                handler.wfile.write(body[i:i + 1])
                handler.wfile.flush()
                time.sleep(interval)
        except OSError:
            pass
    return answer


def slowly(body, pieces, interval, gate=None):
    """A route that sends body (with Range support) in pieces, sleeping
    between them, and after the first piece waits for the threading.Event
    gate (if any), so that concurrent clients overlap for sure."""
    def answer(handler):
        start = send_range_headers(handler, body)
        if start is None:
            return
        step = -(-(len(body) - start) // pieces)
        try:
            for offset in range(start, len(body), step):
                handler.wfile.write(body[offset:offset + step])
                handler.wfile.flush()
                if gate is not None:
                    gate.wait(60)
                time.sleep(interval)
        except OSError:
            pass
    return answer


class TLSServer(LocalServer):
    """LocalServer over HTTPS with a self-signed certificate for 127.0.0.1,
    which no client trusts: for certificate-failure tests."""

    def __init__(self, folder):
        import ssl
        import subprocess
        super().__init__()
        cert, key = folder + '/cert.pem', folder + '/key.pem'
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048',
                        '-nodes', '-keyout', key, '-out', cert, '-days', '1',
                        '-subj', '/CN=127.0.0.1'], check=True,
                       capture_output=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket,
                                                server_side=True)

    def url(self, path):
        return super().url(path).replace('http://', 'https://', 1)
