"""A real Kubernetes API server for the chart install tests: etcd + kube-apiserver, no kubelet, no controllers.

The binaries come from scripts/kube-tools (kube-apiserver built from the Go module proxy at the version pinned
in tests/helm/tools.env, etcd from Debian's etcd-server package), cached under ~/.cache/binance-ingest. The
point is server-side behaviour a chart meets on a real cluster: OpenAPI validation and defaulting, CRDs,
namespaces, hooks, admission and upgrade rules. Without a controller manager nothing reconciles, so:

* hook Jobs never finish by themselves: ``complete_hook_jobs`` marks them complete through the Job status
  subresource (what the Job controller would write after a successful pod), which is how helm learns it;
* namespaces are never finalized after deletion, so every test uses a fresh namespace and never deletes it;
* no ``default`` ServiceAccount or ``kube-root-ca.crt`` ConfigMap appears in new namespaces: an empty
  namespace stays empty, so "nothing left behind" is an exact check.

Clients authenticate with an admin certificate (``O=system:masters``); the REST helper speaks plain HTTPS
with it, so no Kubernetes client library is needed.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ingest.devstack.stack import free_port

TOOLS = Path.home() / ".cache" / "binance-ingest"
KUBE_APISERVER = TOOLS / "bin" / "kube-apiserver"
ETCD = TOOLS / "etcd" / "usr" / "bin" / "etcd"


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)


def make_certs(directory: Path) -> None:
    """CA, serving certificate for 127.0.0.1, admin client certificate, service-account key pair."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(directory, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=kube-test-ca")
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes\n"
                                          "extendedKeyUsage=serverAuth\n")
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject, ext in (("server", "/CN=kube-apiserver", "server.ext"),
                               ("admin", "/O=system:masters/CN=admin", "client.ext")):
        _openssl(directory, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", subject)
        _openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext)
    _openssl(directory, "genrsa", "-out", "sa.key", "2048")
    _openssl(directory, "rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")


class KubeApiServer:
    """etcd + kube-apiserver on loopback ports, a kubeconfig for helm, and a small REST client."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.certs = directory / "pki"
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.kubeconfig = directory / "kubeconfig"
        self._procs: list[subprocess.Popen[bytes]] = []
        self._ssl: ssl.SSLContext | None = None
        self.ready_s = 0.0

    def start(self, timeout_s: float = 120.0) -> None:
        t0 = time.monotonic()
        make_certs(self.certs)
        etcd_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn("etcd", [str(ETCD), "--name", "test", "--data-dir", str(self.dir / "etcd"),
                             "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                             "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                             "--initial-cluster", f"test=http://127.0.0.1:{peer_port}"])
        c = self.certs
        self._spawn("kube-apiserver", [
            str(KUBE_APISERVER), "--etcd-servers", etcd_url, "--bind-address", "127.0.0.1",
            "--advertise-address", "127.0.0.1", "--secure-port", str(self.port),
            "--tls-cert-file", str(c / "server.crt"), "--tls-private-key-file", str(c / "server.key"),
            "--client-ca-file", str(c / "ca.crt"), "--authorization-mode", "RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", str(c / "sa.pub"),
            "--service-account-signing-key-file", str(c / "sa.key"),
            "--service-cluster-ip-range", "10.96.0.0/24",
            # No node and no controllers: no endpoints to reconcile, no flow-control bootstrap objects needed.
            "--endpoint-reconciler-type", "none", "--enable-priority-and-fairness=false",
            "--cert-dir", str(self.dir / "apiserver-certs")])
        self._write_kubeconfig()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for proc, name in zip(self._procs, ("etcd", "kube-apiserver"), strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited {proc.returncode}:\n{self.log_tail(name)}")
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    self.ready_s = time.monotonic() - t0
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"kube-apiserver not ready in {timeout_s}s:\n{self.log_tail('kube-apiserver')}")

    def _spawn(self, name: str, cmd: list[str]) -> None:
        with (self.dir / f"{name}.log").open("wb") as log:  # the child keeps its own descriptor
            self._procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL))

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def _write_kubeconfig(self) -> None:
        c = self.certs
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url, "certificate-authority": str(c / "ca.crt")}}],
            "users": [{"name": "admin", "user": {"client-certificate": str(c / "admin.crt"),
                                                 "client-key": str(c / "admin.key")}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        }
        self.kubeconfig.write_text(json.dumps(config))
        self.kubeconfig.chmod(0o600)

    # -- REST ----------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> tuple[int, Any]:
        """(status, decoded JSON body); HTTP errors are returned, not raised."""
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=str(self.certs / "ca.crt"))
            ctx.load_cert_chain(str(self.certs / "admin.crt"), str(self.certs / "admin.key"))
            self._ssl = ctx
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": content_type, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=30) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def ok(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        status, out = self.request(method, path, body, content_type)
        if status >= 300:
            raise AssertionError(f"{method} {path} -> {status}: {out}")
        return out

    def create_namespace(self, name: str) -> None:
        self.ok("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def apply_crd(self, crd: dict[str, Any], timeout_s: float = 60.0) -> None:
        """Create a CRD and wait until it is Established (its kind is then served)."""
        self.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        name = crd["metadata"]["name"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.ok("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conditions = {c["type"]: c["status"] for c in (got.get("status") or {}).get("conditions") or []}
            if conditions.get("Established") == "True":
                return
            time.sleep(0.2)
        raise AssertionError(f"CRD {name} not established in {timeout_s}s")

    def namespaced_resources(self) -> list[str]:
        """Collection paths of every listable namespaced resource the server serves (core, groups, CRDs)."""
        versions = ["/api/v1"]
        for group in self.ok("GET", "/apis")["groups"]:
            versions.append(f"/apis/{group['preferredVersion']['groupVersion']}")
        out = []
        for version in versions:
            for res in self.ok("GET", version)["resources"]:
                if res["namespaced"] and "/" not in res["name"] and "list" in res.get("verbs", []):
                    out.append(f"{version}/namespaces/{{ns}}/{res['name']}")
        return out

    def objects_in(self, namespace: str) -> list[str]:
        """kind/name of every object in the namespace, over every namespaced resource ("events" excluded)."""
        found = []
        for template in self.namespaced_resources():
            if template.endswith("/events"):
                continue
            status, body = self.request("GET", template.format(ns=namespace))
            if status == 200:
                found += [f"{template.rsplit('/', 1)[1]}/{item['metadata']['name']}" for item in body["items"]]
        return sorted(set(found))

    def complete_hook_jobs(self, namespace: str) -> list[str]:
        """Mark every unfinished Job of the namespace succeeded, as the Job controller would after its pod
        exited 0 (the pods themselves are proven separately: tests/container runs them). Returns their names."""
        done = []
        for job in self.ok("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs")["items"]:
            status = job.get("status", {})
            if any(c["type"] in ("Complete", "Failed") for c in status.get("conditions", [])):
                continue
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            completions = job["spec"].get("completions", 1)
            patch = {"status": {
                "startTime": status.get("startTime", now), "completionTime": now, "succeeded": completions,
                "active": 0, "ready": 0, "terminating": 0,
                "uncountedTerminatedPods": {},
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                     "message": "Reached expected number of succeeded pods", "lastProbeTime": now,
                     "lastTransitionTime": now},
                    {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                     "message": "Reached expected number of succeeded pods", "lastProbeTime": now,
                     "lastTransitionTime": now}]}}
            self.ok("PATCH", f"/apis/batch/v1/namespaces/{namespace}/jobs/{job['metadata']['name']}/status",
                    patch, "application/merge-patch+json")
            done.append(job["metadata"]["name"])
        return done


def binaries_missing() -> str | None:
    """Which binary scripts/kube-tools has not provided yet, or None."""
    for path in (KUBE_APISERVER, ETCD):
        if not (path.is_file() and os.access(path, os.X_OK)):
            return str(path)
    return None
