"""The Raspberry Pi 4 latency estimate: constants match the calibration data, inputs are checked, no TF."""

import contextlib
import functools
import json
import math
import subprocess
import sys
import threading

import pytest

from ecg_automl.tflite import pi_estimate as pe


def test_constants_are_the_fit_of_the_calibration_table():
    fit, err = pe.fit_calibration(pe.CALIBRATION)
    assert fit == pe.FIT
    assert err == pe.CALIBRATION_ERROR


def test_calibration_points_are_complete():
    ids = [p["id"] for p in pe.CALIBRATION]
    assert len(ids) == len(set(ids))
    for p in pe.CALIBRATION:
        assert p["pi_ms"] > 0 and p["host_ms"] > 0 and p["host_median_ms"] >= p["host_ms"] * 0.9
        assert p["dtype"] in ("float32", "int8") and p["pi_threads"] in (1, 4)
        assert p["pi_source"].startswith("https://github.com/") and p["pi_setup"] and p["pi_stat"]
    # at least one small model (under 10 ms on the Pi) in the default single-thread fit
    assert any(p["pi_threads"] == 1 and p["pi_ms"] < 10 for p in pe.CALIBRATION)


def test_an_estimate_outside_the_fit_s_host_range_is_called_an_extrapolation():
    """This project's models time at 0.06-0.1 ms here, under the fit's smallest point (0.357 ms): the export's Pi
    figure did not say that it extrapolates."""
    low, high = pe.FIT["pi1"]["host_range_ms"]
    assert pe.extrapolation_note(low) is None and pe.extrapolation_note(high, "int8") is None
    note = pe.extrapolation_note(0.07, "int8")
    assert note == (f"extrapolated: 0.07 ms here is outside the {low:g}-{high:g} ms of host time the host->Pi fit "
                    "was measured over (docs/PI_LATENCY.md)")
    assert pe.extrapolation_note(10 * high).startswith("extrapolated: ")


def test_estimate_follows_the_fit():
    small = next(p for p in pe.CALIBRATION if p["id"] == "deb-mnv1-q")
    est = pe.estimate_pi4_ms(small["host_ms"], "int8")
    assert est == pytest.approx(small["pi_ms"], rel=0.15)
    xs = [0.05, 0.2, 1.0, 2.0, 10.0]
    for threads in (1, 4):
        for dtype in ("float32", "int8"):
            ys = [pe.estimate_pi4_ms(x, dtype, pi_threads=threads) for x in xs]
            assert all(y > 0 for y in ys) and ys == sorted(ys)
    # aliases resolve to the same fits
    assert pe.estimate_pi4_ms(1.0, "fp32") == pe.estimate_pi4_ms(1.0, "float32")
    assert pe.estimate_pi4_ms(1.0, "int8", pi_threads=4) == pytest.approx(
        math.exp(pe.FIT["pi4"]["a"]))


@pytest.mark.parametrize("host, dtype, threads, why", [
    (0.0, "float32", 1, "host_ms must be a positive number"), (-1.0, "float32", 1, "host_ms must be a positive"),
    (float("nan"), "int8", 1, "host_ms must be a positive"), (1.0, "int4", 1, "unknown dtype 'int4'"),
    (1.0, "float32", 2, "pi_threads must be 1 or 4")])
def test_bad_arguments(host, dtype, threads, why):
    with pytest.raises(ValueError, match=why):
        pe.estimate_pi4_ms(host, dtype, pi_threads=threads)


def test_loo_errors_of_a_perfect_power_law_are_zero():
    xs = [0.5, 1.0, 2.0, 4.0]
    ys = [3.0 * x ** 1.2 for x in xs]
    a, b = pe.fit_loglog(xs, ys)
    assert (math.exp(a), b) == (pytest.approx(3.0), pytest.approx(1.2))
    assert max(pe.loo_errors(xs, ys)) < 1e-9


def test_module_does_not_import_tensorflow():
    code = ("import sys; import ecg_automl.tflite.pi_estimate as m; m.estimate_pi4_ms(0.5); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(autouse=True)
def _shipped_calibration(monkeypatch):
    """Every test starts from the shipped fit, whatever the caller's environment says."""
    monkeypatch.delenv(pe.CALIBRATION_ENV, raising=False)
    pe._ACTIVE.clear()
    yield
    pe._ACTIVE.clear()


def _calibration_file(tmp_path, speedup: float, cpu: str = "Test CPU 9000"):
    import json

    points = [{"id": p["id"], "host_ms": p["host_ms"] / speedup} for p in pe.CALIBRATION]
    path = tmp_path / "calib.json"
    path.write_text(json.dumps({"host_cpu": cpu, "platform": "test", "points": points}))
    return path


def test_a_host_calibration_file_replaces_the_shipped_fit(tmp_path, monkeypatch):
    # a host 1.4x faster than the calibration host: the same model times 1.4x lower here, and the estimate
    # made from this host's own calibration must come out where the shipped fit puts the slower host's time
    path = _calibration_file(tmp_path, 1.4)
    shipped = [pe.estimate_pi4_ms(h, d, pi_threads=t) for h in (0.1, 1.0) for d in ("float32", "int8") for t in (1, 4)]
    monkeypatch.setenv(pe.CALIBRATION_ENV, str(path))
    cal = pe.active_calibration()
    assert cal["source"] == str(path) and cal["host_cpu"] == "Test CPU 9000"
    assert cal["fit"]["pi1"]["b"] == pytest.approx(pe.FIT["pi1"]["b"], abs=2e-4)
    own = [pe.estimate_pi4_ms(h / 1.4, d, pi_threads=t) for h in (0.1, 1.0) for d in ("float32", "int8") for t in (1, 4)]
    assert own == pytest.approx(shipped, rel=2e-3)
    assert pe.estimate_pi4_ms(1.0) != pytest.approx(shipped[2], rel=0.05)  # and differs at the same host time


def test_another_cpu_than_the_calibration_host_is_warned_about_once(monkeypatch, caplog):
    monkeypatch.setattr(pe, "host_cpu_name", lambda: pe.HOST_CPU_NAME)
    with caplog.at_level("WARNING", logger="ecg_automl"):
        pe.estimate_pi4_ms(0.5)
    assert not caplog.records and pe.active_calibration()["matches_this_host"] is True
    pe._ACTIVE.clear()
    monkeypatch.setattr(pe, "host_cpu_name", lambda: "Some Other CPU")
    with caplog.at_level("WARNING", logger="ecg_automl"):
        pe.estimate_pi4_ms(0.5)
        pe.estimate_pi4_ms(0.7)
    assert len(caplog.records) == 1
    msg = caplog.records[0].getMessage()
    assert "Some Other CPU" in msg and pe.HOST_CPU_NAME in msg and "calibrate_pi.py --json" in msg
    assert pe.active_calibration()["matches_this_host"] is False


def test_a_bad_host_calibration_file_is_refused_with_its_name(tmp_path, monkeypatch):
    from ecg_automl.tflite.gate import LatencyGate

    cases = {tmp_path / "missing.json": "no such file", tmp_path / "bad.json": "not a calibrate_pi.py --json file",
             tmp_path / "nopoints.json": "no 'points' list", tmp_path / "short.json": "deb-mnv2-q"}
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "nopoints.json").write_text('{"host_cpu": "x"}')
    (tmp_path / "short.json").write_text('{"points": [{"id": "deb-mnv2-f32", "host_ms": 5.0}]}')
    for path, why in cases.items():
        pe._ACTIVE.clear()
        monkeypatch.setenv(pe.CALIBRATION_ENV, str(path))
        with pytest.raises(pe.CalibrationError, match=why) as exc:
            pe.estimate_pi4_ms(0.5)
        assert str(path) in str(exc.value)
        with pytest.raises(pe.CalibrationError):  # the gate says so when it is built, before any trial
            LatencyGate(1.0)
    with _bench_server() as url:
        LatencyGate(1.0, target=url)  # a real Pi's measurement needs no host fit


@contextlib.contextmanager
def _serving(server):
    """``server`` (bound to a loopback port) serving from a thread, its URL for as long as the block runs."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _bench_server():
    """A real bench-server on a free loopback port, for as long as the block runs."""
    from ecg_automl.tflite.bench_server import make_server

    return _serving(make_server("127.0.0.1", 0))


def test_a_latency_target_that_is_not_a_running_bench_server_is_refused_before_any_trial(tmp_path):
    """A mistyped URL or a device that is off would otherwise fail every trial, forever."""
    import http.server
    import socket

    from ecg_automl.tflite import TFLiteError
    from ecg_automl.tflite.gate import LatencyGate

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    # another web server that answers /health with a page (a router's): it was reported as not reachable, with
    # JSON's "Expecting value" as the reason and "start `ecg-automl bench-server`" as the remedy
    (tmp_path / "health").write_text("<html>router login</html>")
    page = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=page.serve_forever, daemon=True).start()
    try:
        cases = {"notaurl": "is not a bench-server URL", "pi.local:8000": "is not a bench-server URL",
                 f"http://127.0.0.1:{closed}": "cannot reach bench-server .*start `ecg-automl bench-server` on this "
                                               "machine",
                 f"http://127.0.0.1:{other.server_address[1]}": "answered GET /health with 404",
                 f"http://127.0.0.1:{page.server_address[1]}": r"^http://127.0.0.1:\d+ answered GET /health with "
                                                              r"'<html>router login</html>': is it an `ecg-automl "
                                                              r"bench-server`\?$"}
        for url, why in cases.items():
            with pytest.raises(TFLiteError, match=why):
                LatencyGate(1.0, target=url)
    finally:
        for server in (other, page):
            server.shutdown()
            server.server_close()
    with _bench_server() as url:
        assert LatencyGate(1.0, target=url + "/").target == url + "/"
        with pytest.raises(TFLiteError, match=r"/benchmark/health with 404: give the server's address alone, http://"):
            LatencyGate(1.0, target=url + "/benchmark")  # the endpoint, not the server, was given


def test_a_study_resumes_under_a_new_bench_server_url_only_when_the_same_board_answers_there(tmp_path):
    """A Pi that got a new address (DHCP) made its study impossible to resume: the URL is one of the settings.
    The new URL is taken when the board there is the one that timed the trials, and refused when it is another."""
    import optuna

    from ecg_automl.tflite.bench_server import check_target
    from search import StudySettings, open_study
    from search.study import StudyMismatchError
    from spaces import SearchSpace

    space = SearchSpace.load("spaces/default.yaml").to_yaml()
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    with _bench_server() as old, _bench_server() as new:
        device = check_target(new)["device"]  # both servers run on this host: one board
        made = StudySettings(space_yaml=space, latency_budget_ms=5, latency_target=old)
        study, _ = open_study("moved", storage, made, heartbeat=None)
        study.add_trial(optuna.trial.create_trial(
            value=0.5, params={}, distributions={},
            user_attrs={"latency_ms": 1.0, "latency_device": device}))
        study, settings = open_study("moved", storage, StudySettings(space_yaml=space, latency_budget_ms=5,
                                                                     latency_target=new), heartbeat=None)
        assert settings.latency_target == new
        assert optuna.load_study(study_name="moved", storage=storage).user_attrs["latency_target_moves"] == [
            {"from": old, "to": new, "trials_before": 1}]
        _, settings = open_study("moved", storage, None, heartbeat=None)  # a worker now times there
        assert settings.latency_target == new
        with pytest.raises(StudyMismatchError, match="other settings .*latency_budget_ms"):  # not only the URL
            open_study("moved", storage, StudySettings(space_yaml=space, latency_budget_ms=9, latency_target=old),
                       heartbeat=None)
        study.add_trial(optuna.trial.create_trial(
            value=0.6, params={}, distributions={},
            user_attrs={"latency_ms": 1.0, "latency_device": {**device, "model": "Raspberry Pi 5"}}))
        with pytest.raises(StudyMismatchError, match="timed on 2 different boards"):
            open_study("moved", storage, made, heartbeat=None)
    assert open_study("moved", storage, None, heartbeat=None)[1].latency_target == new  # nothing moved back


def _health_server(answer: dict):
    """A loopback server whose GET /health answers ``answer``."""
    import http.server
    import json

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return _serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler))


def test_a_moved_bench_server_is_refused_when_its_board_or_the_trials_board_is_unknown_or_another(tmp_path):
    """The refusals of a new bench-server URL: another kind of board, a server that does not name its board, trials
    timed before the board was kept; and a study with no timed trial takes any. The study run's MLflow tag keeps the
    move (its study.latency_target param cannot change)."""
    import optuna

    from search import StudySettings, Tracker, TrackingConfig, open_study
    from search.study import StudyMismatchError
    from spaces import SearchSpace

    space = SearchSpace.load("spaces/default.yaml").to_yaml()
    pi4 = {"machine": "aarch64", "system": "Linux", "python": "3.11.2", "model": "Raspberry Pi 4 Model B Rev 1.4"}

    def settings(url):
        return StudySettings(space_yaml=space, latency_budget_ms=5, latency_target=url)

    with _health_server({"ok": True, "device": pi4}) as a, _health_server({"ok": True, "device": pi4}) as b, \
            _health_server({"ok": True, "device": {**pi4, "model": "Raspberry Pi 5 Model B"}}) as pi5, \
            _health_server({"ok": True}) as anonymous:
        storage = f"sqlite:///{tmp_path / 'o.db'}"
        open_study("empty", storage, settings(a), heartbeat=None)
        assert open_study("empty", storage, settings(pi5), heartbeat=None)[1].latency_target == pi5  # nothing timed
        study, _ = open_study("s", storage, settings(a), heartbeat=None)
        tracker = Tracker(TrackingConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", None, "t"))
        run_id = tracker.study_run(study, settings(a).to_dict())
        study.add_trial(optuna.trial.create_trial(value=0.5, params={}, distributions={},
                                                  user_attrs={"latency_ms": 1.0, "latency_device": pi4}))
        with pytest.raises(StudyMismatchError, match=r"timed on .*Raspberry Pi 4.*, and http://127.0.0.1:\d+ is "
                                                     r".*Raspberry Pi 5"):
            open_study("s", storage, settings(pi5), heartbeat=None)
        with pytest.raises(StudyMismatchError, match="does not say which board it is"):
            open_study("s", storage, settings(anonymous), heartbeat=None)
        study, _ = open_study("s", storage, settings(b), heartbeat=None)
        assert tracker.study_run(study, settings(b).to_dict()) == run_id
        assert json.loads(tracker.client.get_run(run_id).data.tags["latency_target_moves"]) == [
            {"from": a, "to": b, "trials_before": 1}]
        study.add_trial(optuna.trial.create_trial(value=0.5, params={}, distributions={}, user_attrs={"latency_ms": 1.0}))
        with pytest.raises(StudyMismatchError, match="do not record the board that timed them"):
            open_study("s", storage, settings(a), heartbeat=None)


@contextlib.contextmanager
def _fake_bench_server(do_post):
    """A loopback HTTP server whose POST handler is ``do_post(handler)``, for as long as the block runs."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            do_post(self)

        def log_message(self, *args):
            pass

    with _serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        yield url


@pytest.mark.parametrize("answer, why", [
    (b"<html>hello</html>", "with no JSON"),
    (b'{"p90_ms": 1.0}', "median_ms None, not a positive number"),
    (b'{"median_ms": NaN, "p90_ms": 1.0}', "median_ms nan"),
    (b'{"median_ms": -1, "p90_ms": 1.0}', "median_ms -1"),
    (b'{"median_ms": "fast", "p90_ms": 1.0}', "median_ms 'fast'"),
])
def test_a_bench_server_answer_without_a_timing_stops_the_study_naming_the_server(answer, why):
    """An HTML page, a missing or NaN median, -1 or text failed every trial with a raw JSONDecodeError or KeyError
    (NaN passed the budget; -1 went on the front; text crashed the run) instead of one error naming the server."""
    from ecg_automl.tflite import LatencyTargetError
    from ecg_automl.tflite.bench_server import remote_latency

    def reply(handler):
        handler.rfile.read(int(handler.headers["Content-Length"]))
        handler.send_response(200)
        handler.end_headers()
        handler.wfile.write(answer)

    with _fake_bench_server(reply) as url:
        with pytest.raises(LatencyTargetError, match=f"bench-server {url} answered POST /benchmark .*{why}") as err:
            remote_latency(url, b"model", waits=())
        assert err.value.stops_study


def test_a_bench_server_that_cannot_be_reached_is_tried_again_before_it_stops_the_search(monkeypatch):
    """A brief drop (Wi-Fi, a restart of the Pi's server) failed the trial outright: each timing is tried three more
    times, then it is a LatencyTargetError, which stops the search (tests/test_search.py)."""
    import socket

    from ecg_automl.tflite import LatencyTargetError
    from ecg_automl.tflite import bench_server as bs

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    sleeps: list[float] = []
    monkeypatch.setattr(bs.time, "sleep", sleeps.append)
    with pytest.raises(LatencyTargetError, match=rf"cannot reach bench-server http://127.0.0.1:{closed} .*4 tries"):
        bs.remote_latency(f"http://127.0.0.1:{closed}", b"model")
    assert sleeps == list(bs.RETRY_WAITS)


def test_a_bench_server_still_timing_is_not_sent_the_model_again_and_fails_only_that_trial():
    """A read timeout was retried like a refused connection: the model went again to a server still timing it (two
    timings at once, each slower), and a slow model stopped the whole search."""
    import time as _time

    from ecg_automl.tflite import LatencyTargetError, TFLiteError
    from ecg_automl.tflite.bench_server import remote_latency

    posts = []

    def stall(handler):
        posts.append(handler.path)
        handler.rfile.read(int(handler.headers["Content-Length"]))
        _time.sleep(1.5)

    with _fake_bench_server(stall) as url:
        with pytest.raises(TFLiteError, match=f"bench-server {url} sent no timing within 0.3 s") as err:
            remote_latency(url, b"model", timeout=0.3, waits=(0.01, 0.01))
        assert not isinstance(err.value, LatencyTargetError) and len(posts) == 1
