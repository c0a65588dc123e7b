"""Security defaults: servers the toolkit starts listen on loopback unless told otherwise (with a
warning), and nothing read from disk or the network is unpickled or eval'ed."""

from __future__ import annotations

import io
import subprocess
import tokenize
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from ecg_automl import cli

PRODUCT_PACKAGES = ["ecg_automl", "ecg_data", "spaces", "search"]


def test_ui_help_says_it_binds_loopback_by_default(tmp_path, cli_env):
    out = run_cli(["ui", "--help"], tmp_path, cli_env).stdout
    assert "default 127.0.0.1" in " ".join(out.split())
    assert cli.build_parser().parse_args(["ui"]).host == "127.0.0.1"


def test_bench_server_binds_loopback_by_default(monkeypatch):
    monkeypatch.setattr(cli, "_extra_parsers", [])  # main() and this test each register the extras
    cli._load_extras()
    assert cli.build_parser().parse_args(["bench-server"]).host == "127.0.0.1"


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "argument --port: must be a port number from 0 to 65535, not 70000"),
    (["--port", "-1"], "argument --port: must be a port number from 0 to 65535, not -1"),
    (["--max-mb", "nan"], "argument --max-mb: must be a finite number above 0"),
    (["--max-mb", "-1"], "argument --max-mb: must be a finite number above 0"),
    (["--max-mb", "1e308"], "argument --max-mb: must be at most 4096 MB, not 1e308"),  # an OverflowError traceback
    (["--host", "no-such-host.invalid"], "bench-server cannot listen on no-such-host.invalid:8765"),
])
def test_bench_server_bad_options_give_one_line(tmp_path, cli_env, args, message):
    """Before, an out-of-range port or an unknown host was a traceback and --max-mb -1 refused every model."""
    proc = run_cli(["bench-server", *args], tmp_path, cli_env, check=False, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_bench_server_on_a_port_in_use_says_so(tmp_path, cli_env):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli(["bench-server", "--port", port], tmp_path, cli_env, check=False, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"bench-server cannot listen on 127.0.0.1:{port}: Address already in use" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bench_server_answers_bad_requests_at_once():
    """A negative Content-Length hung the request until the client gave up; runs=0 was blamed on the model
    (422 'LiteRT could not run the model'); a body that stops short held its thread forever."""
    import http.client
    import socket
    import threading

    from ecg_automl.tflite.bench_server import make_server

    server = make_server("127.0.0.1", 0, request_timeout=2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        fake = b"xxxxTFL3" + b"\0" * 64  # passes the identifier check; the query is refused before LiteRT
        for query in ("runs=0", "runs=-5", "warmup=-1"):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", f"/benchmark?{query}", body=fake)
            resp = conn.getresponse()
            assert resp.status == 400 and b"runs must be at least 1" in resp.read(), query
            conn.close()
        for head, status in ((b"Content-Length: -1\r\n\r\nxxxxTFL3", b" 400 "),
                             (b"Content-Length: 1000\r\n\r\nxxxxTFL3", b" 408 ")):  # body stops short
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"POST /benchmark HTTP/1.1\r\nHost: x\r\n" + head)
                assert status in sock.recv(4096).split(b"\r\n")[0]
    finally:
        server.shutdown()
        server.server_close()


def test_bench_server_holds_a_bounded_number_of_uploads_in_memory():
    """Each connection's thread read its whole body (up to 16 MB) into memory, with no limit on connections: a
    dozen clients that sent 15 MB and stalled took the server from 128 to 313 MB, a few dozen a Pi's memory. A
    connection beyond ``max_uploads`` now waits for a slot, then is answered 503 without its body being read."""
    import http.client
    import socket
    import threading
    import time

    from ecg_automl.tflite.bench_server import make_server

    server = make_server("127.0.0.1", 0, request_timeout=2, max_uploads=2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    stalled = []
    try:
        for _ in range(2):  # two uploads that stop half way hold both slots
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"POST /benchmark HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nxxxxTFL3")
            stalled.append(sock)
        trickling = threading.Event()
        trickling.set()

        def trickle():  # a byte now and then: the per-read timeout never ends them
            while trickling.is_set():
                for sock in stalled:
                    sock.sendall(b"x")
                time.sleep(0.2)

        threading.Thread(target=trickle, daemon=True).start()
        deadline = time.monotonic() + 10
        while True:  # on a busy host a stalled upload's thread can take its slot after this one's (then: 400)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/benchmark?runs=0", body=b"xxxxTFL3" + b"\0" * 64)
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            if resp.status != 400 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert resp.status == 503 and b"2 models are being received or timed" in body
        trickling.clear()
        for sock in stalled:  # silent now: timed out (408), and their slots are free again
            assert b" 408 " in sock.recv(4096).split(b"\r\n")[0]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/benchmark?runs=0", body=b"xxxxTFL3" + b"\0" * 64)
        assert conn.getresponse().status == 400  # read and answered: runs=0 is refused
        conn.close()
    finally:
        for sock in stalled:
            sock.close()
        server.shutdown()
        server.server_close()


def test_bench_server_on_every_address_names_a_url_another_machine_can_use(monkeypatch):
    """`bench-server --host 0.0.0.0` (how a Pi serves a search on another machine) printed
    http://0.0.0.0:PORT, which no client reaches: pasted into --latency-target it was 'cannot reach'."""
    import socket

    from ecg_automl.tflite import bench_server

    monkeypatch.setattr(socket, "gethostname", lambda: "raspberrypi")
    for host in ("0.0.0.0", "::", ""):
        line = bench_server.listening_line(host, 8765)
        assert "--latency-target http://raspberrypi:8765" in line and "http://0.0.0.0" not in line, line
    assert bench_server.listening_line("192.168.1.20", 8765).startswith("bench-server on http://192.168.1.20:8765 ")
    assert bench_server.listening_line("::1", 8765).startswith("bench-server on http://[::1]:8765 ")


def test_bench_server_listens_on_ipv6_loopback():
    """--host ::1, which serve() counts as loopback, was 'Address family for hostname not supported'."""
    import socket
    import threading

    from ecg_automl.tflite.bench_server import check_target, make_server

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    server = make_server("::1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert check_target(f"http://[::1]:{server.server_address[1]}")["ok"] is True
    finally:
        server.shutdown()
        server.server_close()


class _NoServer:
    """Stands in for subprocess.Popen: records the command instead of starting a server."""

    started: list = []

    def __init__(self, cmd, **kwargs):
        self.pid = -1
        _NoServer.started.append(cmd)

    def wait(self, timeout=None):
        return 0


@pytest.mark.parametrize("host, exposed", [(None, False), ("127.0.0.1", False), ("0.0.0.0", True)])
def test_ui_exposes_only_when_asked_and_warns(tmp_path, monkeypatch, capsys, host, exposed):
    """The command ``ecg-automl ui`` would run, captured instead of started."""
    import signal

    started = _NoServer.started = []
    monkeypatch.setattr(subprocess, "Popen", _NoServer)
    monkeypatch.setattr(subprocess, "call", lambda cmd, **kw: _NoServer(cmd).wait())
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # ui installs a SIGTERM handler
    monkeypatch.setattr(cli, "_extra_parsers", [])
    monkeypatch.chdir(tmp_path)
    args = ["ui", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"] + (["--host", host] if host else [])
    assert cli.main(args) == 0
    cmd = started[0]
    assert cmd[cmd.index("--host") + 1] == (host or "127.0.0.1")
    err = capsys.readouterr().err
    assert ("warning:" in err and "no authentication" in err) == exposed


@pytest.mark.parametrize("host", ["127.0.0.1", "no-such-host.invalid"])
def test_ui_on_a_port_in_use_or_an_unknown_host_says_so_before_starting(tmp_path, monkeypatch, capsys, host):
    """The server logged a bind error among its start-up lines and exited 0 about 40 s later, after the command
    had printed 'MLflow UI on http://127.0.0.1:PORT', a URL served by whatever held the port."""
    import signal
    import socket

    started = _NoServer.started = []
    monkeypatch.setattr(subprocess, "Popen", _NoServer)
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    monkeypatch.setattr(cli, "_extra_parsers", [])
    monkeypatch.chdir(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = cli.main(["ui", "--host", host, "--port", str(port),
                         "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    assert code == 2 and started == []
    err = capsys.readouterr().err
    assert f"error: the MLflow UI cannot listen on {host}:{port}: " in err
    in_use = "Address already in use (another UI already running? choose another --port)" in err
    assert in_use == (host == "127.0.0.1")


def test_ui_on_port_0_prints_the_port_it_serves_on(tmp_path, monkeypatch, capsys):
    """--port 0 printed 'MLflow UI on http://127.0.0.1:0'; the port the system picks is printed and served."""
    import signal

    started = _NoServer.started = []
    monkeypatch.setattr(subprocess, "Popen", _NoServer)
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    monkeypatch.setattr(cli, "_extra_parsers", [])
    monkeypatch.chdir(tmp_path)
    assert cli.main(["ui", "--port", "0", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 0
    port = started[0][started[0].index("--port") + 1]
    assert int(port) > 0 and f"MLflow UI on http://127.0.0.1:{port} " in capsys.readouterr().out


def test_ui_on_a_tracking_server_is_a_usage_error_and_on_a_missing_store_warns(tmp_path, monkeypatch, capsys):
    """`ui --tracking-uri http://...` ended in MLflow's UnsupportedModelRegistryStoreURIException traceback; `ui` on
    a SQLite store that does not exist (run from another folder than the searches') silently served a new, empty
    one."""
    import signal

    started = _NoServer.started = []
    monkeypatch.setattr(subprocess, "Popen", _NoServer)
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    monkeypatch.setattr(cli, "_extra_parsers", [])
    monkeypatch.chdir(tmp_path)
    assert cli.main(["ui", "--tracking-uri", "http://127.0.0.1:1"]) == 2 and started == []
    err = capsys.readouterr().err
    assert err == ("error: `ecg-automl ui` serves a tracking store it opens itself (sqlite:///FILE, a database URL); "
                   "http://127.0.0.1:1 is a tracking server, which has its own UI: open http://127.0.0.1:1 in a "
                   "browser\n")
    assert cli.main(["ui", "--port", "0", "--tracking-uri", "sqlite:///runs/mlflow.db"]) == 0 and len(started) == 1
    err = capsys.readouterr().err
    assert f"warning: no MLflow store at {tmp_path / 'runs' / 'mlflow.db'}: the UI will be empty until a search " \
           f"logs there" in err, err
    (tmp_path / "runs" / "mlflow.db").touch()
    assert cli.main(["ui", "--port", "0", "--tracking-uri", "sqlite:///runs/mlflow.db"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_ui_stops_its_server_promptly_on_sigterm(tmp_path, cli_env):
    """``kill`` (SIGTERM) on ``ecg-automl ui`` stops the MLflow server it started and exits, in seconds: its
    handler used to wait for the server inside the wait it interrupted, and hung until a 20 s timeout."""
    import signal
    import socket
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "ecg_automl", "ui", "--port", str(port),
                             "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
                            cwd=tmp_path, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/health"
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, proc.communicate()[0][-2000:]
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                assert time.time() < deadline, "the MLflow UI did not come up"
                time.sleep(1)
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        took = time.time() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and took < 15, (proc.returncode, took)  # stopped, as every command says so
    with pytest.raises(OSError):  # the server went with it
        urllib.request.urlopen(url, timeout=2)


def _code_tokens(path: Path) -> list[str]:
    """The file's code tokens (comments and strings left out), so a comment saying "never eval()" is fine."""
    skip = {tokenize.COMMENT, tokenize.STRING, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENCODING, tokenize.ENDMARKER}
    skip |= {getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, n)}
    toks = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return [t.string for t in toks if t.type not in skip]


#: Token sequences that would unpickle or evaluate data (or load a Keras model unsafely).
FORBIDDEN = [
    ("pickle", ".", "load"), ("pickle", ".", "loads"), ("cPickle", ".", "load"), ("dill", ".", "load"),
    ("joblib", ".", "load"), ("marshal", ".", "loads"), ("shelve", ".", "open"), ("yaml", ".", "load"),
    ("yaml", ".", "unsafe_load"), ("torch", ".", "load"),
    ("allow_pickle", "=", "True"), ("safe_mode", "=", "False"), ("exec", "("),
]


def _hits(tokens: list[str]) -> list[str]:
    found = []
    for i in range(len(tokens)):
        for seq in FORBIDDEN:
            if tuple(tokens[i:i + len(seq)]) == seq:
                found.append("".join(seq))
        if tokens[i] == "eval" and tokens[i + 1:i + 2] == ["("]:  # builtins.eval( and DataFrame.eval( too
            found.append("eval(")
    return found


def test_the_scanner_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import pickle, numpy as np\nx = pickle.load(f)\ny = eval(s)\nz = np.load(p, allow_pickle=True)\n"
                   "m = keras.saving.load_model(p, safe_mode=False)\n# eval(comment) is fine\nok = ast.literal_eval(s)\n"
                   "w = builtins.eval(s)\n")
    assert sorted(_hits(_code_tokens(bad))) == sorted(["pickle.load", "eval(", "allow_pickle=True", "safe_mode=False",
                                                      "eval("])


def test_product_code_neither_unpickles_nor_evals():
    files = [p for pkg in PRODUCT_PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 20
    found = {str(p.relative_to(ROOT)): h for p in files if (h := _hits(_code_tokens(p)))}
    assert found == {}


def test_a_tracking_uris_password_is_not_printed(tmp_path, monkeypatch, capsys):
    """A study storage's password was hidden (***) in messages and printed commands, a tracking URI's was not: an
    unreachable server, `ui` on a server and the commands printed next showed it in terminals and logs."""
    import argparse
    import socket

    from search import Tracker, TrackingConfig, TrackingError

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://bob:s3cret@127.0.0.1:{port}"
    with pytest.raises(TrackingError) as err:
        Tracker(TrackingConfig(tracking_uri=uri, artifact_location=None, experiment_name="x")).check()
    assert f"http://bob:***@127.0.0.1:{port}" in str(err.value) and "s3cret" not in str(err.value)

    monkeypatch.setattr(cli, "_extra_parsers", [])
    monkeypatch.chdir(tmp_path)
    assert cli.main(["ui", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert f"open http://bob:***@127.0.0.1:{port} in a browser" in err and "s3cret" not in err

    args = argparse.Namespace(mlflow_config=None, tracking_uri=uri, experiment="e", storage=None, no_mlflow=False,
                              study="s", dataset="mitdb")
    assert "s3cret" not in cli._sync_command("s", args) and "bob:***@" in cli._sync_command("s", args)
    cli._print_next_steps(args, {"f1": 0.5})
    out = capsys.readouterr().out
    assert "s3cret" not in out and f"open http://bob:***@127.0.0.1:{port} in a browser" in out


@pytest.mark.parametrize("uri, message", [
    # refused with the scheme named, as by every command (TrackingConfig), before ui's own checks
    ("sqllite:///runs/mlflow.db", "tracking URI sqllite:///runs/mlflow.db: MLflow has no tracking store for the "
                                  "scheme 'sqllite'"),
    ("ftp://host/x", "tracking URI ftp://host/x: MLflow has no tracking store for the scheme 'ftp'"),
    ("sqlite:///{tmp}/notadb.db", "{tmp}/notadb.db is not an SQLite database"),
    ("postgresql://u:secret@127.0.0.1:1/x", "cannot reach the MLflow tracking store at postgresql://u:***@127.0.0.1:1/x"),
])
def test_ui_on_a_store_mlflow_cannot_open_says_so_before_starting(tmp_path, monkeypatch, capsys, uri, message):
    """A mistyped scheme, a file that is no database or a database server that does not answer: the URL was printed,
    then the server's start-up traceback, exit 1."""
    import signal

    import mlflow.tracking._tracking_service.utils  # noqa: F401  (imported before Popen is replaced: it runs uname)

    started = _NoServer.started = []
    monkeypatch.setattr(subprocess, "Popen", _NoServer)
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    monkeypatch.setattr(cli, "_extra_parsers", [])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notadb.db").write_text("not a database")
    assert cli.main(["ui", "--tracking-uri", uri.format(tmp=tmp_path)]) == 2 and started == []
    out = capsys.readouterr()
    assert f"error: {message.format(tmp=tmp_path)}" in out.err and "MLflow UI on" not in out.out


@pytest.mark.parametrize("host, url", [("::1", "http://[::1]:{port} "), ("0.0.0.0", "port {port} of every address")])
@pytest.mark.parametrize("signum, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_ui_prints_a_url_a_browser_opens_and_exits_as_stopped(tmp_path, monkeypatch, capsys, host, url, signum, code):
    """`ui --host ::1` printed http://::1:PORT (no brackets) and --host 0.0.0.0 http://0.0.0.0:PORT, which no
    browser opens; Ctrl-C and SIGTERM ended it with exit 0, as if the UI had ended by itself."""
    import signal

    handlers = {}

    class Stopped(_NoServer):
        def wait(self, timeout=None):
            if timeout is None:  # the main wait: the signal arrives
                if signum == "SIGTERM":
                    handlers[signal.SIGTERM]()
                raise KeyboardInterrupt
            return 0

    monkeypatch.setattr(subprocess, "Popen", Stopped)
    monkeypatch.setattr(signal, "signal", lambda sig, handler: handlers.__setitem__(sig, handler))
    monkeypatch.setattr(cli.os, "killpg", lambda pid, sig: None)
    monkeypatch.setattr(cli, "_extra_parsers", [])
    monkeypatch.setattr(cli, "_free_port", lambda host, port: 5077)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["ui", "--host", host, "--port", "5077",
                     "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == code
    assert f"MLflow UI on {url.format(port=5077)}" in capsys.readouterr().out


def test_ui_starts_on_a_store_whose_experiment_was_deleted(tmp_path, monkeypatch):
    """The UI lists every experiment and restores a deleted one from its trash: the reachability check it shares
    with search refused to start it when mlflow.yaml's experiment had been deleted."""
    import signal

    from search import TrackingConfig
    from search.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    tracker = Tracker(TrackingConfig(uri, None, "ecg-automl"))
    tracker.client.delete_experiment(tracker.check())
    started = _NoServer.started = []
    monkeypatch.setattr(subprocess, "Popen", _NoServer)
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    monkeypatch.setattr(cli, "_extra_parsers", [])
    monkeypatch.chdir(tmp_path)
    assert cli.main(["ui", "--port", "0", "--tracking-uri", uri]) == 0 and len(started) == 1
