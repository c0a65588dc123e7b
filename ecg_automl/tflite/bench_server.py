"""A tiny HTTP service that runs on the Raspberry Pi: POST a ``.tflite``, get its measured latency back.

LiteRT + numpy + the standard library only (no TensorFlow). Binds 127.0.0.1 unless told otherwise;
accepts only TFLite flatbuffers up to a size limit; runs one benchmark at a time so measurements do not
disturb each other.
"""

from __future__ import annotations

import json
import logging
import platform
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from .latency import measure_latency

log = logging.getLogger("bench_server")

MAX_BYTES = 16 * 1024 * 1024
#: Oversized uploads up to this size are read and dropped before the 413 answer (see do_POST).
_DRAIN_LIMIT = 64 * 1024 * 1024
TFLITE_IDENTIFIER = b"TFL3"


def is_tflite(payload: bytes) -> bool:
    """A TFLite flatbuffer carries the file identifier ``TFL3`` at bytes 4..8."""
    return len(payload) >= 8 and payload[4:8] == TFLITE_IDENTIFIER


def _device() -> dict[str, Any]:
    info = {"machine": platform.machine(), "system": platform.system(), "python": platform.python_version()}
    try:  # Raspberry Pi OS names the board here
        with open("/proc/device-tree/model", "rb") as fh:
            info["model"] = fh.read().rstrip(b"\0").decode(errors="replace")
    except OSError:
        pass
    try:
        import ai_edge_litert

        info["litert"] = getattr(ai_edge_litert, "__version__", "?")
    except Exception:
        pass
    return info


def make_server(host: str = "127.0.0.1", port: int = 8765, *, max_bytes: int = MAX_BYTES,
                max_runs: int = 2000, request_timeout: float = 60, max_uploads: int = 4) -> ThreadingHTTPServer:
    """The HTTP server (not started): ``GET /health``, ``POST /benchmark?runs=N&warmup=W&threads=T``;
    ``request_timeout``: seconds a connection may stay silent; ``max_uploads``: bodies held in memory at once
    until answered (each up to ``max_bytes``: a dozen clients that sent 15 MB and stalled held 185 MB of a Pi's
    1-8 GB; the next waits up to ``request_timeout`` for a slot, then gets 503)."""
    lock = threading.Lock()
    uploads = threading.BoundedSemaphore(max_uploads)
    device = _device()

    class Handler(BaseHTTPRequestHandler):
        server_version = "ecg-automl-bench/1"
        timeout = request_timeout  # a client that stalls mid-request is dropped, not waited for forever

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):  # route to logging, not stderr
            log.info("%s %s", self.address_string(), fmt % args)

        def do_GET(self):
            if urlparse(self.path).path == "/health":
                return self._reply(200, {"ok": True, "device": device})
            return self._reply(404, {"error": "unknown path; use GET /health or POST /benchmark"})

        def do_POST(self):
            url = urlparse(self.path)
            if url.path != "/benchmark":
                return self._reply(404, {"error": "unknown path; use POST /benchmark"})
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                return self._reply(411, {"error": "Content-Length required"})
            if length < 0:  # read(-1) would wait for the client to close the connection
                self.close_connection = True
                return self._reply(400, {"error": f"Content-Length {length} is negative"})
            if length > max_bytes:
                # Read (and drop) a moderately oversized body first, so the client gets the 413 instead of a
                # broken pipe; a huge one just gets the answer and the connection closed.
                if length <= _DRAIN_LIMIT:
                    remaining = length
                    try:
                        while remaining > 0:
                            chunk = self.rfile.read(min(remaining, 1 << 16))
                            if not chunk:
                                break
                            remaining -= len(chunk)
                    except TimeoutError:
                        pass
                self.close_connection = True
                return self._reply(413, {"error": f"model of {length} bytes is over the {max_bytes}-byte limit"})
            if not uploads.acquire(timeout=request_timeout):  # held until the answer: the model stays in memory
                self.close_connection = True
                return self._reply(503, {"error": f"{max_uploads} models are being received or timed: try again "
                                                  f"later"})
            try:
                return self._benchmark(url, length)
            finally:
                uploads.release()

        def _benchmark(self, url, length: int) -> None:
            try:
                payload = self.rfile.read(length)
            except TimeoutError:
                self.close_connection = True
                return self._reply(408, {"error": f"the body stopped before its {length} bytes arrived"})
            if not is_tflite(payload):
                return self._reply(415, {"error": "payload is not a TFLite flatbuffer (no TFL3 identifier)"})
            q = parse_qs(url.query)
            try:
                runs = min(int(q.get("runs", ["200"])[0]), max_runs)
                warmup = min(int(q.get("warmup", ["20"])[0]), max_runs)
                threads = min(max(int(q.get("threads", ["1"])[0]), 1), 8)
            except ValueError:
                return self._reply(400, {"error": "runs, warmup and threads must be integers"})
            if runs < 1 or warmup < 0:  # a bad query, not a model LiteRT cannot run
                return self._reply(400, {"error": f"runs must be at least 1 and warmup at least 0 (got runs={runs}, "
                                                  f"warmup={warmup})"})
            with lock:
                try:
                    result = measure_latency(payload, n_runs=runs, warmup=warmup, threads=threads)
                except Exception as exc:  # a flatbuffer LiteRT cannot load or run
                    return self._reply(422, {"error": f"LiteRT could not run the model: {type(exc).__name__}: {exc}"})
            return self._reply(200, {**result, "size_bytes": length, "device": device})

    server_class = _IPv6Server if ":" in host else ThreadingHTTPServer  # AF_INET refused --host ::1 and ::
    return server_class((host, port), Handler)


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


#: Addresses that listen on every interface of the machine: not an address a client can be given.
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def listening_line(host: str, port: int) -> str:
    """What bench-server prints once it listens. On a wildcard address (``--host 0.0.0.0``) it names the URL another
    machine gives ``--latency-target`` (this machine's name), not ``http://0.0.0.0:PORT``, which no client reaches."""
    if host not in _WILDCARD_HOSTS:
        return f"bench-server on {_url(host, port)} (POST /benchmark a .tflite; Ctrl-C to stop)"
    return (f"bench-server on port {port} of every address of this machine (POST /benchmark a .tflite; Ctrl-C to "
            f"stop); from another machine: search --latency-target {_url(socket.gethostname(), port)} (or this "
            f"machine's IP address in place of its name)")


def serve(host: str = "127.0.0.1", port: int = 8765, **kw) -> None:
    """Run the server until Ctrl-C, warning when it listens beyond loopback. Without LiteRT it does not start:
    it would answer GET /health and then fail every benchmark."""
    from .runtime import require_litert

    require_litert()
    server = make_server(host, port, **kw)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("bench-server listens on %s: anyone who can reach this port can make it run models",
                    host or "every address")
    print(listening_line(host, server.server_address[1]), flush=True)
    try:
        server.serve_forever()  # until Ctrl-C (KeyboardInterrupt, for the caller: `bench-server` exits 130)
    finally:
        server.server_close()


def check_target(url: str, *, timeout: float = 10) -> dict[str, Any]:
    """``GET /health`` of the bench-server at ``url``: a mistyped URL or a server that is down is one error
    before the first trial, not a failure in every trial. Returns the server's answer (its device)."""
    import urllib.error
    import urllib.request

    from .convert import TFLiteError

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise TFLiteError(f"latency target {url!r} is not a bench-server URL: give http://HOST:PORT of a running "
                          f"`ecg-automl bench-server`")
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as resp:
            body = resp.read()
        try:  # reached: an answer that is not JSON is another web server (a router page), not an unreachable one
            answer = json.loads(body)
        except ValueError:
            answer = body.decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        path = parsed.path.rstrip("/")
        hint = (f": give the server's address alone, {parsed.scheme}://{parsed.netloc}" if path
                else ": is it an `ecg-automl bench-server`?")
        raise TFLiteError(f"{url} answered GET {path}/health with {exc.code}{hint}") from None
    except (OSError, ValueError) as exc:  # refused, timed out, unknown host, a malformed URL
        reason = getattr(exc, "reason", exc)
        local = (parsed.hostname or "") in ("127.0.0.1", "localhost", "::1")
        start = ("start `ecg-automl bench-server` on this machine" if local else
                 "start `ecg-automl bench-server --host 0.0.0.0` on the device")
        raise TFLiteError(f"cannot reach bench-server {url} ({reason}): {start} (a worker reads the target from its "
                          f"study; a study made without --latency-target uses the Pi 4 estimate instead)") from None
    if not isinstance(answer, dict) or not answer.get("ok"):
        raise TFLiteError(f"{url} answered GET /health with {str(answer)[:200]!r}: is it an `ecg-automl bench-server`?")
    return answer


#: What a study's search says when its bench-server cannot be reached (:class:`~.gate.LatencyGate`): the study takes a
#: new address for the same kind of board.
MOVED_HINT = (" If the device has a new address, resume the study with `ecg-automl search ... --latency-target NEW_URL` "
              "(taken when a board of the same model and software answers there); workers started after it time there.")

#: Seconds waited before each new try when a bench-server cannot be reached (a Wi-Fi drop, a restart): three tries
#: more, then the search stops (:class:`~.convert.LatencyTargetError`).
RETRY_WAITS = (2.0, 5.0, 10.0)


def remote_latency(url: str, tflite_bytes: bytes, *, runs: int = 200, warmup: int = 20, threads: int = 1,
                   timeout: float = 300, waits: tuple[float, ...] = RETRY_WAITS, hint: str = "") -> dict[str, Any]:
    """Ask a bench-server at ``url`` (http://HOST:PORT) to time ``tflite_bytes``. A refused or dropped connection is
    tried again after each of ``waits``; one still failing, a connection or upload that times out (not tried again:
    each try would wait ``timeout``), or an answer without a positive finite ``median_ms`` and ``p90_ms`` (an HTML
    page, NaN, -1, text) is a :class:`~.convert.LatencyTargetError` naming the server, which stops the search. The
    server refusing this model (an HTTP error), or sending no timing within ``timeout`` once it has the model, is a
    :class:`~.convert.TFLiteError`: that model's trial fails, the search goes on. ``hint`` ends the messages of a
    server that cannot be reached (what the caller can do about it)."""
    import urllib.error
    import urllib.request

    from .convert import LatencyTargetError, TFLiteError

    import http.client

    endpoint = f"{url.rstrip('/')}/benchmark?runs={runs}&warmup={warmup}&threads={threads}"
    for attempt, wait in enumerate((*waits, None)):
        req = urllib.request.Request(endpoint, data=tflite_bytes, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                body = resp.read()
            break
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise TFLiteError(f"bench-server {url} refused the model ({exc.code}): {detail}") from None
        except urllib.error.URLError as exc:  # no connection: refused, unknown host, or no answer to it in time
            if isinstance(exc.reason, TimeoutError):  # a host that drops packets: tries would each wait `timeout`
                raise LatencyTargetError(f"cannot reach bench-server {url} (timed out connecting to it or sending it "
                                         f"the model): is the device on, at this address?{hint}") from None
            problem = exc.reason
        except TimeoutError:  # connected, but no timing in time: the server may still be timing this model, so it
            # is not sent again (two timings at once would each be slower); this model's trial fails
            raise TFLiteError(f"bench-server {url} sent no timing within {timeout:g} s (a model too slow to time "
                              f"there, or a server stuck)") from None
        except (OSError, http.client.HTTPException) as exc:  # the connection dropped (reset, closed, cut short)
            problem = exc
        if wait is None:
            raise LatencyTargetError(
                f"cannot reach bench-server {url} ({problem}; {attempt + 1} tries, {sum(waits):g} s apart in all): is "
                f"`ecg-automl bench-server` still running on the device?{hint}")
        log.warning("bench-server %s: %s; trying again in %g s", url, problem, wait)
        time.sleep(wait)
    return _check_answer(url, body)


def _check_answer(url: str, body: bytes) -> dict[str, Any]:
    """The bench-server's JSON answer, or a :class:`~.convert.LatencyTargetError` saying what is wrong with it."""
    from .convert import LatencyTargetError

    try:
        answer = json.loads(body)
    except ValueError:
        raise LatencyTargetError(f"bench-server {url} answered POST /benchmark with no JSON "
                                 f"({body[:80].decode(errors='replace')!r}...): is it an `ecg-automl bench-server`?"
                                 ) from None
    if not isinstance(answer, dict):
        raise LatencyTargetError(f"bench-server {url} answered POST /benchmark with {str(answer)[:120]!r}, not the "
                                 f"timing of the model")
    for key in ("median_ms", "p90_ms"):
        value = answer.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise LatencyTargetError(f"bench-server {url} answered POST /benchmark with {key} {value!r}, not a "
                                     f"positive number of milliseconds: is it an `ecg-automl bench-server` of this "
                                     f"version?")
    return answer
