"""Real servers for the scale-out and fault tests, all on loopback: a throw-away PostgreSQL cluster
(Debian's ``postgresql`` package, started with initdb + pg_ctl in a temporary folder) and ``mlflow server``.
Also the polling helpers the tests share. Every process started here is stopped by its own handle."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------
def postgres_bin_dir() -> Path | None:
    """The folder with initdb and pg_ctl: Debian keeps them in /usr/lib/postgresql/<version>/bin
    (package ``postgresql``), not on PATH; otherwise whatever PATH has."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(os.path.realpath(initdb)).parent
    return None


@dataclass
class Postgres:
    """A running cluster: ``url(db)`` gives the SQLAlchemy URL of database ``db`` as user ``ecg``."""

    port: int
    password: str
    folder: Path
    bin_dir: Path
    run_as: list[str]

    def url(self, db: str) -> str:
        return f"postgresql://ecg:{self.password}@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        subprocess.run([*self.run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.folder / "data"),
                        "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres(databases=("optuna", "mlflow")) -> Postgres:
    """initdb + pg_ctl start on a free loopback port, unix socket in the cluster's folder; password
    (SCRAM) logins only; then the same SQL as docs/SCALE_OUT.md: a user ``ecg`` owning ``databases``.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user that
    Debian's package creates (commands run through ``runuser -u postgres --``). Raises RuntimeError
    with the reason if it cannot be started."""
    import psycopg2

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found; "
                                "install Debian's package: apt-get install postgresql")
    run_as: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="ecg-pg-"))
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder)
            raise FileNotFoundError("running as root and there is no 'postgres' user to own the cluster")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    superuser_pw, password = secrets.token_hex(12), secrets.token_hex(12)
    pwfile = folder / "superuser.pw"
    pwfile.write_text(superuser_pw + "\n")
    if run_as:
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)
    port = free_port()
    try:
        subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", "postgres",
                        "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, text=True, timeout=120)
        opts = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "log"),
                        "-w", "-t", "120", "-o", opts, "start"], check=True, capture_output=True, text=True,
                       timeout=150)
    except subprocess.CalledProcessError as exc:
        log = (folder / "log").read_text()[-2000:] if (folder / "log").exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr[-2000:]}\n{log}") from None
    pg = Postgres(port, password, folder, bin_dir, run_as)
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", password=superuser_pw,
                                dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE USER ecg WITH PASSWORD '{password}'")
            for db in databases:
                cur.execute(f"CREATE DATABASE {db} OWNER ecg")
        conn.close()
    except Exception:
        pg.stop()
        raise
    return pg


# --------------------------------------------------------------------------------------------
# MLflow tracking server
# --------------------------------------------------------------------------------------------
@dataclass
class MlflowServer:
    url: str
    port: int
    proc: subprocess.Popen
    log: Path

    def stop(self, kill: bool = False) -> None:
        """Stop the server's whole process group (it was started in a session of its own: the mlflow
        CLI, its uvicorn server and its job runners), then wait until the port is free."""
        def signal_group(sig):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

        if self.proc.poll() is None:
            signal_group(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                signal_group(signal.SIGKILL)
                self.proc.wait(timeout=30)
        signal_group(signal.SIGKILL)  # anything of the group still there (job runners)
        deadline = time.time() + 30
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.5)


def start_mlflow_server(backend_uri: str, artifacts: Path, log: Path, port: int | None = None,
                        timeout: float = 180) -> MlflowServer:
    """``mlflow server`` on 127.0.0.1 (the command docs/SCALE_OUT.md shows, with loopback as host)."""
    port = port or free_port()
    out = open(log, "a")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", backend_uri, "--artifacts-destination", artifacts.as_uri()],
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    out.close()
    url = f"http://127.0.0.1:{port}"
    server = MlflowServer(url, port, proc, log)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                return server
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited ({proc.returncode}): {log.read_text()[-3000:]}")
        time.sleep(1)
    server.stop(kill=True)
    raise RuntimeError(f"mlflow server did not answer in {timeout:.0f} s: {log.read_text()[-3000:]}")


def trial_runs_by_number(tracking_uri: str, experiment: str) -> tuple[list, dict[int, list]]:
    """(study runs, {trial number: [runs]}) of an experiment, read with MLflow's own client."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    studies = [r for r in runs if r.data.tags.get("ecg_automl.kind") == "study"]
    trials: dict[int, list] = {}
    for r in runs:
        if r.data.tags.get("ecg_automl.kind") == "trial":
            trials.setdefault(int(r.data.tags["optuna.trial_number"]), []).append(r)
    return studies, trials
