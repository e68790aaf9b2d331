"""pyproject.toml and requirements.txt agree; the package builds as a wheel; the code zip is rebuilt when,
and only when, a source changes; the spark-submit command a cluster master gets."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

from deploy import artefacts

ROOT = Path(__file__).resolve().parent.parent


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            out[req.name.lower()] = str(req.specifier).removeprefix("==")
    return out


def test_every_dependency_and_extra_is_pinned_in_requirements_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"]) + [d for ds in project["optional-dependencies"].values() for d in ds]
    locked = pins()
    for dep in map(Requirement, declared):
        assert dep.name.lower() in locked, f"{dep.name} is declared in pyproject.toml but not pinned"
        assert dep.specifier.contains(locked[dep.name.lower()], prereleases=True), \
            f"requirements.txt pins {dep.name}=={locked[dep.name.lower()]}, outside pyproject's {dep.specifier}"
    names = {Requirement(d).name.lower() for d in declared}
    assert set(locked) <= names, f"pinned but declared nowhere: {sorted(set(locked) - names)}"


def test_runtime_requirements_leave_out_pyspark_and_the_extras():
    reqs = {Requirement(r).name.lower() for r in artefacts.runtime_requirements(ROOT)}
    assert "pyspark" not in reqs and "streamlit" not in reqs and "pytest" not in reqs
    assert {"numpy", "librosa", "pymongo", "protobuf", "pydantic-settings"} <= reqs


def test_the_package_builds_as_a_wheel_with_every_top_level_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("musicrec-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for pkg in ("conf", "common", "jobs", "feature_extraction", "simulator", "dashboard", "stack", "deploy"):
        assert f"{pkg}/__init__.py" in names, pkg
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


def test_code_zip_is_reused_until_a_source_changes(tmp_path):
    src = tmp_path / "src"
    for pkg in artefacts.CODE_PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    first = artefacts.build_code(src, tmp_path / "out")
    mtime = first.stat().st_mtime_ns
    assert artefacts.build_code(src, tmp_path / "out") == first and first.stat().st_mtime_ns == mtime
    names = zipfile.ZipFile(first).namelist()
    assert "jobs/fit_model.py" in names and "conf/settings.py" in names
    (src / "jobs" / "fit_model.py").write_text((src / "jobs" / "fit_model.py").read_text() + "\n# changed\n")
    second = artefacts.build_code(src, tmp_path / "out")
    assert second != first and second.exists()


def test_a_cluster_master_gets_the_artefacts_and_the_packed_python(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
    out = subprocess.run([str(ROOT / "spark-submit.sh"), "--dry-run", "--master", "spark://10.0.0.1:7077",
                          "--conf", "spark.ui.port=4999", "jobs/fit_model.py", "--no-tune"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    cmd = out.stdout
    assert "--py-files " + str(ROOT / ".cache" / "artefacts" / "musicrec-code-") in cmd
    assert "--archives " + str(ROOT / ".cache" / "artefacts" / "musicrec-env-") in cmd and ".tar.gz#env" in cmd
    assert "spark.pyspark.python=./env/bin/python" in cmd
    assert cmd.rstrip().endswith(f"spark.ui.port=4999 {ROOT}/jobs/fit_model.py --no-tune")
    local = subprocess.run([str(ROOT / "spark-submit.sh"), "--dry-run", "--master", "local[2]", "jobs/fit_model.py"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert local.returncode == 0 and "--archives" not in local.stdout and "musicrec-code-" in local.stdout
