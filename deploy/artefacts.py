"""What spark-submit ships to a cluster, built once and reused while nothing they hold has changed.

    <artefacts_dir>/musicrec-code-<hash>.zip   the jobs' packages (conf, common, jobs, feature_extraction,
                                               simulator) for --py-files; <hash> is over their sources
    <artefacts_dir>/musicrec-env-<hash>.tar.gz the runtime dependencies (pyproject's `dependencies` at the
                                               versions of requirements.txt and of this venv, less pyspark,
                                               which the cluster's Spark provides), a venv packed with
                                               venv-pack, for --archives ...#env; <hash> is over the pins
                                               and the Python version
    <jars_dir>/*.jar                           the connectors for --jars (scripts/setup.sh resolves them)

The packed venv's `bin/python` links to the interpreter it was built from (so every node needs Python 3.11 at
sys.base_prefix), or to <settings.deploy_python_prefix>/bin/python3.11; the other files are its own.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from conf import Settings

CODE_PACKAGES = ("conf", "common", "jobs", "feature_extraction", "simulator")
NOT_PACKED = ("pyspark",)          # the cluster's Spark puts its own pyspark on the workers' PYTHONPATH
ZIP_TIME = (2020, 1, 1, 0, 0, 0)   # fixed, so that equal sources give an equal zip


@dataclass
class Artefacts:
    code: str
    env: str
    jars: list[str]
    python: str            # the interpreter the packed env runs: ./env/bin/python inside a container


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def runtime_requirements(root: Path) -> list[str]:
    """pyproject's runtime dependencies pinned as in requirements.txt, less NOT_PACKED. Pure file reads."""
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {_name(d) for d in deps} - set(NOT_PACKED)
    pins = {}
    for line in (root / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pins[_name(line)] = line
    missing = sorted(wanted - set(pins))
    if missing:
        raise ValueError(f"requirements.txt pins none of {missing} (pyproject.toml's dependencies)")
    return sorted(pins[n] for n in wanted)


def code_files(root: Path) -> list[Path]:
    return sorted(f.relative_to(root) for pkg in CODE_PACKAGES for f in (root / pkg).rglob("*.py")
                  if "__pycache__" not in f.parts)


def _digest(chunks) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c if isinstance(c, bytes) else str(c).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def build_code(root: Path, out_dir: Path) -> Path:
    files = code_files(root)
    contents = [(str(f), (root / f).read_bytes()) for f in files]
    target = out_dir / f"musicrec-code-{_digest(x for pair in contents for x in pair)}.zip"
    if target.exists():
        return target
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in contents:
            z.writestr(zipfile.ZipInfo(name, ZIP_TIME), data, zipfile.ZIP_DEFLATED)
    _publish(target, buf.getvalue())
    return target


def _publish(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(target)


def env_key(root: Path, python_prefix: str = "") -> str:
    """Over the Python, the runtime pins and the whole lock (which fixes the transitive versions)."""
    return _digest([sys.version.split()[0], python_prefix or sys.base_prefix, *runtime_requirements(root),
                    (root / "requirements.txt").read_bytes()])


def _constraints() -> list[str]:
    """This venv's installed versions (pip freeze): the packed env gets the same transitive versions."""
    out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], check=True,
                         capture_output=True, text=True).stdout
    return sorted(line for line in out.splitlines() if "==" in line and _name(line) not in NOT_PACKED)


def build_env(root: Path, out_dir: Path, log=print, python_prefix: str = "") -> Path:
    target = out_dir / f"musicrec-env-{env_key(root, python_prefix)}.tar.gz"
    if target.exists():
        return target
    import fcntl

    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".env-build.lock", "w") as lock:   # two submits at once: one builds, the other waits
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        return _build_env(root, out_dir, target, log, python_prefix)


def _build_env(root: Path, out_dir: Path, target: Path, log, python_prefix: str) -> Path:
    reqs = runtime_requirements(root)
    with tempfile.TemporaryDirectory(prefix="musicrec-env-", dir=out_dir.parent if out_dir.parent.exists() else None) as tmp:
        tmp = Path(tmp)
        env = tmp / "env"
        base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
        log(f"[deploy] building the packed environment: {len(reqs)} packages into a new venv (a few minutes)")
        subprocess.run([str(base), "-m", "venv", str(env)], check=True)
        (tmp / "requirements.txt").write_text("\n".join(reqs) + "\n")
        (tmp / "constraints.txt").write_text("\n".join(_constraints()) + "\n")
        # run in tmp: `python -m pip` puts its working folder on sys.path, and the checkout's
        # musicrec.egg-info there made pip report the project itself as installed without pyspark
        subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-r", str(tmp / "requirements.txt"), "-c", str(tmp / "constraints.txt")], check=True,
                       cwd=tmp)
        # what the executors import must import here (a broken build fails now, not on the cluster)
        subprocess.run([str(env / "bin" / "python"), "-c", "import numpy, pandas, pyarrow, librosa, pymongo, "
                        "pydantic_settings, soundfile, confluent_kafka, google.protobuf.descriptor"], check=True,
                       cwd=tmp)
        out = tmp / target.name
        log(f"[deploy] packing it with venv-pack into {target}")
        prefix = ["--python-prefix", python_prefix] if python_prefix else []
        subprocess.run([str(Path(sys.executable).parent / "venv-pack"), "-p", str(env), "-o", str(out),
                        "--compress-level", "1", "--quiet", *prefix], check=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(str(out), target.with_name(target.name + ".part"))
        target.with_name(target.name + ".part").chmod(0o644)
        target.with_name(target.name + ".part").replace(target)
    return target


def prune(out_dir: Path, keep: list[Path]) -> None:
    """Older builds go: only the current code zip and env stay."""
    for f in out_dir.glob("musicrec-*"):
        if f not in keep and ".part" not in f.name and ".tmp-" not in f.name:
            f.unlink(missing_ok=True)


def build(settings: Settings, log=print, env: bool = True) -> Artefacts:
    """Build what changed, reuse the rest; env=False: the code zip only (the env field is then "")."""
    root, out_dir = Path(settings.root), Path(settings.artefacts_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    code = build_code(root, out_dir)
    if not env:
        return Artefacts(code=str(code), env="", jars=sorted(str(p) for p in Path(settings.jars_dir).glob("*.jar")),
                         python="./env/bin/python")
    env = build_env(root, out_dir, log, settings.deploy_python_prefix)
    prune(out_dir, [code, env])
    jars = sorted(str(p) for p in Path(settings.jars_dir).glob("*.jar"))
    artefacts = Artefacts(code=str(code), env=str(env), jars=jars, python="./env/bin/python")
    (out_dir / "manifest.json").write_text(json.dumps(asdict(artefacts), indent=1) + "\n")
    return artefacts
