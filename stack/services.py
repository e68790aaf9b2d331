"""The local stack: PostgreSQL, FerretDB on it (the local MongoDB) and a KRaft Kafka broker, on
loopback, with their data under data/.

    python -m stack.services up       # start what is not running, wait until healthy, create topics
    python -m stack.services down     # stop them (data stays)
    python -m stack.services status   # versions, ports, health

`up` is idempotent: a service already running and healthy is left alone. A service is only started
when its configured address is on loopback; point MUSICREC_KAFKA_BOOTSTRAP or MUSICREC_MONGO_URI at a
real cluster and `up` only checks it. Every failure is one line on stderr and exit code 1.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from common.store import pool_limits
from conf import Settings
from stack import cli, postgres


class StackError(RuntimeError):
    """A failure a user can act on; its message is the one line we print."""


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _split_hostport(addr: str, default_port: int) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return (host or addr, int(port)) if port.isdigit() else (addr, default_port)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


@dataclass
class Service:
    name: str
    host: str
    port: int
    settings: Settings

    @property
    def run_dir(self) -> Path:
        return self.settings.data_dir / "run"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.settings.data_dir / "logs" / f"{self.name}.log"

    @property
    def local(self) -> bool:
        return self.host in LOOPBACK

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    stop_signal = signal.SIGTERM    # sent by `down` to the process group (to the leader only: stop_group False)
    stop_group = True

    # subclasses: command(), prepare(), healthy(), version(); popen_kwargs() to run as another user
    def popen_kwargs(self) -> dict:
        return {}

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        pass

    def healthy(self) -> bool:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def start(self) -> str:
        if self.pid() is not None and self.healthy():
            return f"{self.name}: already running (pid {self.pid()}) on {self.host}:{self.port}"
        if not self.local:
            if self.healthy():
                return f"{self.name}: external service at {self.host}:{self.port} is healthy"
            raise StackError(f"{self.name}: external service at {self.host}:{self.port} does not answer")
        if self.pid() is None and port_open(self.host, self.port):
            raise StackError(f"{self.name}: port {self.host}:{self.port} is taken by another process; "
                             f"stop it or set another address in conf (MUSICREC_*)")
        if self.pid() is None:
            self.prepare()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_file, "ab") as log:
                proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        cwd=self.settings.root, **self.popen_kwargs())
            self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + self.settings.service_timeout_s
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise StackError(f"{self.name}: exited at start-up; see {self.log_file}")
            if self.healthy():
                return f"{self.name}: up (pid {self.pid()}) on {self.host}:{self.port}"
            time.sleep(0.5)
        raise StackError(f"{self.name}: not healthy after {self.settings.service_timeout_s:.0f} s; "
                         f"see {self.log_file}")

    def stop(self) -> str:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return f"{self.name}: not running"
        (os.killpg if self.stop_group else os.kill)(pid, self.stop_signal)
        deadline = time.monotonic() + 30
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return f"{self.name}: stopped"

    def status(self) -> str:
        pid = self.pid()
        health = "healthy" if self.healthy() else "not answering"
        where = f"pid {pid}" if pid else ("external" if not self.local else "not started here")
        return f"{self.name:9s} {self.host}:{self.port:<6d} {health:14s} {where:18s} {self.version()}"


class PostgreSQL(Service):
    """FerretDB's backend: a cluster of our own under data/postgres, run as an unprivileged user when
    the caller is root; `up` provisions its `_id` indexes (stack/postgres.py)."""
    stop_signal = signal.SIGINT     # fast shutdown of the postmaster: does not wait for clients to disconnect
    stop_group = False

    def popen_kwargs(self) -> dict:
        return postgres.user_kwargs(postgres.run_as(self.settings))

    def prepare(self) -> None:
        try:
            postgres.init_cluster(self.settings)
        except postgres.PostgresError as exc:
            raise StackError(str(exc)) from None

    def command(self) -> list[str]:
        return postgres.server_command(self.settings, pool_limits(self.settings).max_connections)

    def start(self) -> str:
        line = super().start()
        try:
            postgres.provision(self.settings)
        except postgres.PostgresError as exc:
            raise StackError(str(exc)) from None
        return line

    def healthy(self) -> bool:
        try:
            return postgres.ready(self.settings)
        except (postgres.PostgresError, OSError):
            return False

    def version(self) -> str:
        try:
            if self.healthy():
                return postgres.version(self.settings)
            out = subprocess.run([str(postgres.bin_dir() / "postgres"), "--version"], capture_output=True, text=True)
            return "PostgreSQL " + out.stdout.split()[-1] if out.returncode == 0 else "-"
        except (postgres.PostgresError, OSError, IndexError):
            return "-"


def embedded_ferretdb_version(go_mod: Path = Path(__file__).parent / "ferretdb" / "go.mod") -> str | None:
    """The FerretDB version our binary embeds, from its go.mod: FerretDB used as a library reports "unknown"
    in buildInfo (its build/version package only reads version.txt when it is the main module)."""
    for line in go_mod.read_text().splitlines():
        parts = line.split()
        if "github.com/FerretDB/FerretDB" in parts:
            return parts[parts.index("github.com/FerretDB/FerretDB") + 1]
    return None


class FerretDB(Service):
    @property
    def binary(self) -> Path:
        return self.settings.cache_dir / "bin" / "musicrec-ferretdb"

    def command(self) -> list[str]:
        url = postgres.ferretdb_url(self.settings, pool_limits(self.settings).pool_max_conns)
        return [str(self.binary), f"--listen-addr={self.settings.ferretdb_listen}", f"--postgresql-url={url}"]

    def popen_kwargs(self) -> dict:
        # FerretDB decodes the stored document of every upsert from JSON: its garbage collector took about
        # a fifth of its CPU at Go's default target (GOGC=100)
        return {"env": {**os.environ, "GOGC": str(self.settings.ferretdb_gogc)}}

    def prepare(self) -> None:
        if not self.binary.exists():
            if shutil.which("go") is None:
                raise StackError("ferretdb: Go is missing (need Go 1.24+); run `make setup` after installing it")
            raise StackError(f"ferretdb: {self.binary} is not built; run `make setup`")

    def _client(self):
        from common.store import client

        return client(self.settings, timeout_ms=1000, socket_timeout_ms=5000)

    def healthy(self) -> bool:
        try:
            with self._client() as client:
                client.admin.command("ping")
            return True
        except Exception:
            return False

    def version(self) -> str:
        try:
            with self._client() as client:
                info = client.server_info()
            ferret = info.get("ferretdbVersion") or info.get("ferretdb", {}).get("version")
            if ferret in (None, "unknown"):  # embedded FerretDB reports no version of its own
                ferret = embedded_ferretdb_version()
            return f"MongoDB wire {info.get('version')}" + (f", FerretDB {ferret}" if ferret else "")
        except Exception:
            return "-"


class Kafka(Service):
    @property
    def jars(self) -> Path:
        return self.settings.cache_dir / "jars" / "kafka"

    @property
    def config(self) -> Path:
        return self.settings.data_dir / "kafka" / "server.properties"

    def _java(self) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise StackError("kafka: Java is missing (need Java 17+); install a JDK and run `make setup`")
        log4j = self.settings.root / "stack" / "kafka" / "log4j2.properties"
        return [java, "-Xms256m", "-Xmx768m", f"-Dlog4j2.configurationFile={log4j}",
                "-cp", str(self.jars / "*")]

    def prepare(self) -> None:
        if not any(self.jars.glob("kafka_2.13-*.jar")):
            raise StackError(f"kafka: no broker jars in {self.jars}; run `make setup`")
        log_dir = self.settings.data_dir / "kafka" / "log"
        template = (self.settings.root / "stack" / "kafka" / "server.properties.template").read_text()
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(template.format(
            broker=f"{self.host}:{self.port}", controller=f"{self.host}:{self.settings.kafka_controller_port}",
            log_dir=log_dir, partitions=self.settings.kafka_partitions))
        if not (log_dir / "meta.properties").exists():  # format once: `down` then `up` keeps the data
            cluster_id = uuid.uuid4().hex[:22]
            out = subprocess.run(self._java() + ["kafka.tools.StorageTool", "format", "--standalone",
                                                 "-t", cluster_id, "-c", str(self.config)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise StackError(f"kafka: storage format failed: {(out.stderr or out.stdout).strip()[-300:]}")

    def command(self) -> list[str]:
        return self._java() + ["kafka.Kafka", str(self.config)]

    def healthy(self) -> bool:
        """Healthy means a produce is acknowledged, not just an open port."""
        if not port_open(self.host, self.port):
            return False
        from confluent_kafka import Producer

        acked: list[bool] = []
        producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap, "message.timeout.ms": 3000,
                             "socket.timeout.ms": 2000, "logger": _quiet_logger()})
        producer.produce("_musicrec_health", b"ping", on_delivery=lambda err, msg: acked.append(err is None))
        producer.flush(5)
        return bool(acked) and acked[0]

    def version(self) -> str:
        jar = next(iter(sorted(self.jars.glob("kafka_2.13-*.jar"))), None)
        return f"Apache Kafka {jar.stem.split('-', 1)[1]} (KRaft)" if jar and self.local else "-"


def _quiet_logger():
    import logging

    log = logging.getLogger("musicrec.kafka.health")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


def services(settings: Settings) -> list[Service]:
    mongo_host = urlsplit(settings.mongo_uri).hostname or "127.0.0.1"
    mongo_port = urlsplit(settings.mongo_uri).port or 27017
    kafka_host, kafka_port = _split_hostport(settings.kafka_bootstrap.split(",")[0], 9092)
    ferretdb = FerretDB("ferretdb", mongo_host, mongo_port, settings)
    store = [PostgreSQL("postgresql", "127.0.0.1", settings.postgres_port, settings), ferretdb] if ferretdb.local \
        else [ferretdb]
    return store + [Kafka("kafka", kafka_host, kafka_port, settings)]


def ensure_topics(settings: Settings) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    from common.kafka import client_config

    admin = AdminClient(client_config(settings))
    existing = admin.list_topics(timeout=10).topics
    wanted = [NewTopic(t, num_partitions=settings.kafka_partitions, replication_factor=1)
              for t in (settings.topic_activity, settings.topic_dead_letters) if t not in existing]
    for topic, fut in (admin.create_topics(wanted) if wanted else {}).items():
        try:
            fut.result(15)
        except Exception as exc:  # already exists (a race with auto-create) is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise StackError(f"kafka: cannot create topic {topic}: {exc}") from exc


def up(settings: Settings) -> list[str]:
    lines = [svc.start() for svc in services(settings)]
    ensure_topics(settings)
    return lines


def down(settings: Settings) -> list[str]:
    return [svc.stop() for svc in reversed(services(settings)) if svc.local]


def status(settings: Settings) -> list[str]:
    return [svc.status() for svc in services(settings)]


def main(argv: list[str]) -> int:
    return cli.run("stack.services", {"up": up, "down": down, "status": status}, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
