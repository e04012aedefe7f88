"""Fetch the Kafka broker and Apicurio Registry from Maven Central into ``~/.cache/binance-ingest``.

Maven does the fetching (it is the ordinary client for Maven Central and resolves Kafka's dependency
tree); its local repository is kept under the same cache so a second run downloads nothing. A finished
install is marked with a ``.complete`` file so an interrupted download is redone, never half-used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

KAFKA_VERSION = "4.1.1"
# Apicurio 3.0.x is the newest line that runs on Java 17 (3.1+ is built for Java 21); 3.0.9 ships the
# packaged distribution (`-all.tar.gz`) on Maven Central.
APICURIO_VERSION = "3.0.9"


class StackError(RuntimeError):
    """A one-line, user-facing reason why the local stack cannot be prepared or started."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("INGEST_STACK_CACHE", Path(base) / "binance-ingest"))


@dataclass(frozen=True)
class Jars:
    """Where the installed distributions live."""

    kafka_libs: Path
    registry_runner: Path


def require_tool(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"{name} not found on PATH: it is needed to {why} (install it, e.g. apt-get install "
                         f"{'openjdk-17-jre-headless' if name == 'java' else name})")
    return path


def java_major_version(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    # e.g. 'openjdk version "17.0.15" 2025-04-15'
    for token in out.split():
        token = token.strip('"')
        if token[:1].isdigit():
            major = token.split(".")[0]
            return int(major) if major != "1" else int(token.split(".")[1])
    raise StackError(f"cannot tell the Java version from: {out.strip()[:120]}")


def _mvn(args: list[str], what: str) -> None:
    mvn = require_tool("mvn", "download Kafka and the registry from Maven Central")
    repo = cache_dir() / "m2"
    cmd = [mvn, "-B", "-q", f"-Dmaven.repo.local={repo}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR" in ln] or ["(no output)"]
        raise StackError(f"download of {what} failed: {lines[0].strip()[:300]}")


def install_kafka(version: str = KAFKA_VERSION) -> Path:
    """Copy kafka_2.13 and its runtime dependencies into ``<cache>/kafka-<version>/libs``."""
    target = cache_dir() / f"kafka-{version}"
    libs = target / "libs"
    if (target / ".complete").exists():
        return libs
    shutil.rmtree(target, ignore_errors=True)
    libs.mkdir(parents=True)
    pom = resources.files("ingest.devstack") / "kafka-pom.xml"
    with resources.as_file(pom) as pom_path:
        _mvn(["-f", str(pom_path), f"-Dkafka.version={version}", "dependency:copy-dependencies",
              f"-DoutputDirectory={libs}", "-DincludeScope=runtime"], f"Apache Kafka {version}")
    (target / ".complete").write_text(version)
    return libs


def install_registry(version: str = APICURIO_VERSION) -> Path:
    """Fetch and unpack Apicurio Registry's packaged distribution; return its runner jar."""
    target = cache_dir() / f"apicurio-registry-{version}"
    runner = target / f"apicurio-registry-app-{version}-runner.jar"
    if (target / ".complete").exists():
        return runner
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    _mvn(["dependency:copy", f"-Dartifact=io.apicurio:apicurio-registry-app:{version}:tar.gz:all",
          f"-DoutputDirectory={target}"], f"Apicurio Registry {version}")
    archive = target / f"apicurio-registry-app-{version}-all.tar.gz"
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    archive.unlink()
    if not runner.exists():
        raise StackError(f"Apicurio Registry {version} archive has no {runner.name}")
    (target / ".complete").write_text(version)
    return runner


def install_all() -> Jars:
    java = require_tool("java", "run Kafka and the registry")
    if java_major_version(java) < 17:
        raise StackError("Java 17 or newer is required for Kafka 4 (found an older 'java' on PATH)")
    return Jars(kafka_libs=install_kafka(), registry_runner=install_registry())
