"""Run a container spec that `helm template` rendered with podman, the way a kubelet would run it.

What is translated, and why each piece matters:

* ``image``, ``command`` (entrypoint) and ``args``: the chart relies on the image's ENTRYPOINT ``ingest``.
* ``env`` and ``envFrom`` (the chart's ConfigMap, resolved from the same rendering; ``secretKeyRef`` from a
  dict of Secrets the test provides): the worker must be configured by exactly the env (and files) the chart sets.
* the pod's and the container's ``securityContext``: ``--user runAsUser:runAsGroup`` (+ ``fsGroup`` as a
  supplementary group), ``--read-only`` root filesystem with *only* the chart's volumes writable (podman's own
  writable /tmp, /run, /var/tmp are switched off), ``--cap-drop`` and ``no-new-privileges``.
* ``volumeMounts``: ``emptyDir`` becomes a tmpfs (with its ``sizeLimit``), a ``secret`` volume a read-only
  directory with the Secret's items at the secret volume's mode, group-owned by ``fsGroup`` like a kubelet does,
  a ``configMap`` volume (the worker's config file) a read-only directory of the ConfigMap's keys.
* ports and probes: host networking (Kafka advertises 127.0.0.1); probes' named ports resolve to the
  container's ``containerPort`` so the test requests the exact paths and ports the kubelet would.

Nothing here knows the chart's values: only Kubernetes' container and pod spec fields.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PODMAN = os.environ.get("PODMAN", "podman --runtime runc --cgroup-manager=cgroupfs").split()
# The default ulimits cannot be set on every host (e.g. inside a Firecracker VM): explicit, modest ones can.
RUN_FLAGS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def skip_unless_runtime() -> None:
    """Skip (one line) only where no container can start at all: no podman, or podman cannot run anything."""
    if shutil.which(PODMAN[0]) is None:
        pytest.skip(f"{PODMAN[0]} not installed (.ci/setup installs podman and runc from Debian)")
    info = podman("info", check=False)
    if info.returncode != 0:
        pytest.skip(f"podman cannot run containers here: {(info.stderr.strip().splitlines() or ['?'])[-1]}")


@dataclass
class Secret:
    """A Kubernetes Secret's data (key -> text), as the test would have created it in the namespace."""

    data: dict[str, str]


@dataclass
class PodRun:
    """One container of a rendered pod, started with podman."""

    name: str
    container: dict[str, Any]
    pod_spec: dict[str, Any]
    started_at: float = 0.0

    @property
    def ports(self) -> dict[str, int]:
        return {p["name"]: p["containerPort"] for p in self.container.get("ports", [])}

    def probe_url(self, probe: str) -> str:
        """URL of an httpGet probe (``livenessProbe``, ``readinessProbe``, ``startupProbe``) as the kubelet sees it."""
        get = self.container[probe]["httpGet"]
        port = get["port"] if isinstance(get["port"], int) else self.ports[get["port"]]
        return f"http://127.0.0.1:{port}{get['path']}"

    def get(self, url: str, timeout: float = 3.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def state(self) -> dict[str, Any]:
        out = podman("inspect", "--format", "{{json .State}}", self.name, check=False)
        return json.loads(out.stdout) if out.returncode == 0 else {}

    def running(self) -> bool:
        return self.state().get("Running", False)

    def logs(self) -> str:
        """The container's stdout and stderr (the worker logs JSON lines to stderr)."""
        out = podman("logs", self.name, check=False)
        return out.stdout + out.stderr

    def wait_probe(self, probe: str, timeout_s: float) -> float:
        """Seconds from the container's start until the probe answered 200 (fails if the container exits)."""
        url = self.probe_url(probe)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                raise AssertionError(f"container exited ({self.state().get('ExitCode')}):\n{self.logs()[-4000:]}")
            try:
                if self.get(url)[0] == 200:
                    return time.monotonic() - self.started_at
            except OSError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"{probe} {url} not 200 within {timeout_s}s:\n{self.logs()[-4000:]}")

    def stop(self, grace_s: int) -> tuple[int, float]:
        """SIGTERM, SIGKILL after ``grace_s`` (terminationGracePeriodSeconds): (exit code, seconds to exit)."""
        t0 = time.monotonic()
        podman("stop", "--time", str(grace_s), self.name, timeout=grace_s + 60)
        took = time.monotonic() - t0
        return int(self.state()["ExitCode"]), took

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)


def resolve_env(container: dict[str, Any], docs: list[dict[str, Any]], secrets: dict[str, Secret]) -> dict[str, str]:
    """The container's environment as a kubelet builds it: envFrom first, then env (which wins)."""
    env: dict[str, str] = {}
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_maps[source["configMapRef"]["name"]])
        elif "secretRef" in source:
            env.update(secrets[source["secretRef"]["name"]].data)
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]].data[ref["key"]]
    return env


def _secret_dir(volume: dict[str, Any], secrets: dict[str, Secret], workdir: Path, gid: int | None) -> Path:
    spec = volume["secret"]
    data = secrets[spec["secretName"]].data
    items = spec.get("items") or [{"key": k, "path": k} for k in data]
    directory = workdir / f"secret-{volume['name']}"
    directory.mkdir(parents=True)
    mode = spec.get("defaultMode", 0o644)
    for item in items:
        path = directory / item["path"]
        path.write_text(data[item["key"]])
        path.chmod(item.get("mode", mode))
        if gid is not None and os.geteuid() == 0:
            os.chown(path, 0, gid)
    directory.chmod(0o755)
    return directory


def _config_map_dir(volume: dict[str, Any], docs: list[dict[str, Any]], workdir: Path) -> Path:
    """A ``configMap`` volume: the ConfigMap's keys (from the same rendering) as world-readable files (0644,
    a kubelet's default mode), so the container's user reads them whatever its uid."""
    spec = volume["configMap"]
    data = next(d.get("data", {}) for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == spec["name"])
    directory = workdir / f"configmap-{volume['name']}"
    directory.mkdir(parents=True)
    for item in spec.get("items") or [{"key": k, "path": k} for k in data]:
        path = directory / item["path"]
        path.write_text(data[item["key"]])
        path.chmod(item.get("mode", spec.get("defaultMode", 0o644)))
    directory.chmod(0o755)
    return directory


def _size_bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "k": 1000, "M": 1000**2, "G": 1000**3}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


def podman_args(container: dict[str, Any], pod_spec: dict[str, Any], docs: list[dict[str, Any]],
                secrets: dict[str, Secret], workdir: Path) -> list[str]:
    """`podman run` options (without the image) equivalent to the rendered container in its pod."""
    pod_sc = pod_spec.get("securityContext", {})
    sc = {**pod_sc, **container.get("securityContext", {})}
    args = ["--network", "host", *RUN_FLAGS]
    if "runAsUser" in sc:
        user = str(sc["runAsUser"]) + (f":{sc['runAsGroup']}" if "runAsGroup" in sc else "")
        args += ["--user", user]
    if "fsGroup" in pod_sc:
        args += ["--group-add", str(pod_sc["fsGroup"])]
    if sc.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    if sc.get("privileged"):
        args += ["--privileged"]
    for cap in sc.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", cap]
    for cap in sc.get("capabilities", {}).get("add", []):
        args += ["--cap-add", cap]
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            options = "rw,mode=1777"
            if "sizeLimit" in volume["emptyDir"]:
                options += f",size={_size_bytes(str(volume['emptyDir']['sizeLimit']))}"
            args += ["--tmpfs", f"{mount['mountPath']}:{options}"]
        elif "secret" in volume:
            source = _secret_dir(volume, secrets, workdir, pod_sc.get("fsGroup"))
            args += ["--volume", f"{source}:{mount['mountPath']}:ro"]
        elif "configMap" in volume:
            source = _config_map_dir(volume, docs, workdir)
            args += ["--volume", f"{source}:{mount['mountPath']}:ro"]
        else:
            raise AssertionError(f"volume type not supported by this test: {volume}")
    for key, value in resolve_env(container, docs, secrets).items():
        args += ["--env", f"{key}={value}"]
    if container.get("command"):
        args += ["--entrypoint", container["command"][0]]
    return args


def run(name: str, container: dict[str, Any], pod_spec: dict[str, Any], docs: list[dict[str, Any]],
        secrets: dict[str, Secret], workdir: Path, detach: bool = True, image_healthcheck: bool = False,
        timeout: float = 300) -> PodRun | subprocess.CompletedProcess[str]:
    """Start the container (detached: a PodRun) or run it to completion (the finished process).

    Kubernetes ignores the image's HEALTHCHECK (probes replace it), so it is off unless ``image_healthcheck``
    (then `podman healthcheck run` can execute it inside the container).
    """
    podman("rm", "--force", "--time", "0", name, check=False)
    image = container["image"]  # the chart's image reference, e.g. binance-ingest:0.2.0 (scripts/build-image's tag)
    args = podman_args(container, pod_spec, docs, secrets, workdir / name)  # one directory per container
    tail = [*container.get("command", [])[1:], *container.get("args", [])]
    cmd = ["run", "--name", name, *args, *([] if image_healthcheck else ["--no-healthcheck"])]
    if detach:
        pod = PodRun(name, container, pod_spec)
        pod.started_at = time.monotonic()
        podman(*cmd, "--detach", image, *tail)
        return pod
    return podman(*cmd, "--rm", image, *tail, check=False, timeout=timeout)
