"""A local Spark standalone cluster: one master and N workers, on loopback, from the installed pyspark.

    python -m stack.cluster up       # start what is not running; wait until every worker has registered
    python -m stack.cluster down     # stop the workers and the master, and remove their work folders
    python -m stack.cluster status   # the master URL, each process and the workers the master sees

They are started with pyspark's own `bin/spark-class` (`SPARK_HOME` set to the pyspark package):
`org.apache.spark.deploy.master.Master` and `...deploy.worker.Worker --cores C --memory M --work-dir DIR`,
each worker with its own work folder under data/cluster/<master port>/. The workers run in a cleaned
environment: no `PYSPARK_PYTHON`, no project venv on `PATH`, no `MUSICREC_*`, no `PYTHONPATH`. So their executors are
separate JVMs whose Python workers run whatever the application ships: `./spark-submit.sh` ships the
packed environment (`--archives ...#env`, python -m deploy) and the code zip, as on a real cluster.
Ports: settings cluster_master_port, cluster_master_ui_port, cluster_worker_port (+i), cluster_worker_ui_port
(+i). Every failure is one line on stderr and exit code 1.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from conf import Settings
from stack import cli
from stack.services import Service, StackError, port_open


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def master_url(settings: Settings) -> str:
    return f"spark://{settings.cluster_host}:{settings.cluster_master_port}"


def cluster_dir(settings: Settings) -> Path:
    """Pid files, logs and work folders of the cluster on this master port (two clusters never share them)."""
    return Path(settings.data_dir) / "cluster" / str(settings.cluster_master_port)


def clean_env(settings: Settings) -> dict[str, str]:
    """The environment of the master and workers: nothing of this project's Python leaks to executors."""
    venv_bin = str(Path(sys.prefix) / "bin")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MUSICREC_", "PYSPARK_", "SPARK_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and Path(p).resolve() != Path(venv_bin).resolve())
    env["SPARK_HOME"] = str(spark_home())
    env["SPARK_LOCAL_IP"] = settings.cluster_host
    env["SPARK_NO_DAEMONIZE"] = "1"
    log4j = Path(settings.root) / "stack" / "spark" / "log4j2.properties"
    if log4j.exists():
        env["SPARK_DAEMON_JAVA_OPTS"] = f"-Dlog4j2.configurationFile=file:{log4j}"
    return env


def _master_state(settings: Settings, timeout: float = 2.0) -> dict | None:
    url = f"http://{settings.cluster_host}:{settings.cluster_master_ui_port}/json/"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def alive_workers(settings: Settings) -> list[dict]:
    state = _master_state(settings) or {}
    return [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]


@dataclass
class _SparkDaemon(Service):
    def start(self) -> str:
        ui = getattr(self, "ui_port")
        if self.pid() is None and port_open(self.host, ui):
            raise StackError(f"{self.name}: web UI port {self.host}:{ui} is taken by another process; "
                             f"set another in conf (MUSICREC_CLUSTER_*)")
        return super().start()

    @property
    def run_dir(self) -> Path:
        return cluster_dir(self.settings) / "run"

    @property
    def log_file(self) -> Path:
        return cluster_dir(self.settings) / "logs" / f"{self.name}.log"

    def popen_kwargs(self) -> dict:
        return {"env": clean_env(self.settings)}

    def version(self) -> str:
        import pyspark

        return f"Spark {pyspark.__version__} standalone"


class Master(_SparkDaemon):
    @property
    def ui_port(self) -> int:
        return self.settings.cluster_master_ui_port

    def command(self) -> list[str]:
        return [str(spark_home() / "bin" / "spark-class"), "org.apache.spark.deploy.master.Master",
                "--host", self.host, "--port", str(self.port), "--webui-port", str(self.ui_port)]

    def healthy(self) -> bool:
        state = _master_state(self.settings, timeout=1.0)
        return bool(state) and state.get("status") == "ALIVE"


@dataclass
class Worker(_SparkDaemon):
    index: int = 0

    @property
    def ui_port(self) -> int:
        return self.settings.cluster_worker_ui_port + self.index

    @property
    def work_dir(self) -> Path:
        return cluster_dir(self.settings) / f"{self.name}"

    def command(self) -> list[str]:
        s = self.settings
        return [str(spark_home() / "bin" / "spark-class"), "org.apache.spark.deploy.worker.Worker",
                "--host", self.host, "--port", str(self.port), "--webui-port", str(self.ui_port),
                "--cores", str(s.cluster_worker_cores), "--memory", s.cluster_worker_memory,
                "--work-dir", str(self.work_dir), master_url(s)]

    def prepare(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)

    def popen_kwargs(self) -> dict:
        env = clean_env(self.settings)
        # finished applications' folders (each holds an unpacked environment) go after a minute
        env["SPARK_WORKER_OPTS"] = ("-Dspark.worker.cleanup.enabled=true -Dspark.worker.cleanup.interval=60 "
                                    "-Dspark.worker.cleanup.appDataTtl=60")
        return {"env": env}

    def healthy(self) -> bool:
        return any(w.get("port") == self.port and w.get("host") == self.host for w in alive_workers(self.settings))


def processes(settings: Settings) -> list[_SparkDaemon]:
    host = settings.cluster_host
    master = Master("spark-master", host, settings.cluster_master_port, settings)
    workers = [Worker(f"spark-worker-{i + 1}", host, settings.cluster_worker_port + i, settings, index=i)
               for i in range(settings.cluster_workers)]
    return [master, *workers]


def _start(proc: _SparkDaemon) -> str:
    if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
        raise StackError("java not found (Spark needs Java 17+); run `make setup`")
    return proc.start()


def up(settings: Settings) -> list[str]:
    if settings.cluster_host not in ("127.0.0.1", "localhost", "::1"):
        raise StackError(f"the local cluster binds loopback only, not {settings.cluster_host}")
    lines = [_start(p) for p in processes(settings)]
    lines.append(f"master {master_url(settings)}, web UI http://{settings.cluster_host}:"
                 f"{settings.cluster_master_ui_port}/")
    return lines


def down(settings: Settings) -> list[str]:
    lines = [p.stop() for p in reversed(processes(settings))]
    for p in processes(settings):
        if isinstance(p, Worker):
            shutil.rmtree(p.work_dir, ignore_errors=True)
    return lines


def status(settings: Settings) -> list[str]:
    lines = [p.status() for p in processes(settings)]
    workers = alive_workers(settings)
    lines.append(f"master {master_url(settings)}: {len(workers)} alive worker(s), "
                 f"{sum(w.get('cores', 0) for w in workers)} cores")
    return lines


def main(argv: list[str]) -> int:
    return cli.run("stack.cluster", {"up": up, "down": down, "status": status}, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
