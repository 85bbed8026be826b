"""A real Kubernetes control plane for the tests: etcd, kube-apiserver and kube-controller-manager as
local processes on 127.0.0.1 (the envtest approach, plus the controller manager).

The binaries are built by ``tests/kube/controlplane/build.sh`` (``make kube-tools``) from a pinned
wrapper module, into ``.tools/kube-<version>/bin``. TLS uses a throwaway CA made here; the API server
authorizes with RBAC only, so a client that is not the admin gets exactly what its Roles grant, and
ServiceAccount tokens are signed by a key of the run's own (TokenRequest works).

There are no nodes: Pods are created and stay Pending. The service CIDR is a number the API server
allocates ClusterIPs from; nothing here ever sends traffic to it.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import re
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
MODULE = Path(__file__).resolve().parent / "controlplane"
SERVICE_CIDR = "10.96.0.0/16"  # allocated from, never contacted


def version() -> str:
    """The Kubernetes version the wrapper module pins (``require k8s.io/kubernetes vX.Y.Z``)."""
    found = re.search(r"^\s*k8s\.io/kubernetes (v\S+)\s*$", (MODULE / "go.mod").read_text(), re.M)
    assert found, "tests/kube/controlplane/go.mod pins no k8s.io/kubernetes version"
    return found.group(1)


def bin_dir() -> Path:
    return ROOT / ".tools" / f"kube-{version()}" / "bin"


def binary(name: str) -> Path:
    path = bin_dir() / name
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is missing: build the control plane with `make kube-tools`")
    return path


# ---- a throwaway PKI --------------------------------------------------------------------------------


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _name(common: str, org: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if org:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(parts)


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path

    @classmethod
    def create(cls, folder: Path) -> Pki:
        folder.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        ca_key = _key()
        ca = (
            x509.CertificateBuilder()
            .subject_name(_name("audioflow-test-ca"))
            .issuer_name(_name("audioflow-test-ca"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(ca_key, hashes.SHA256())
        )

        def leaf(
            subject: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
        ) -> tuple[bytes, bytes]:
            key = _key()
            builder = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(ca.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            )
            if sans:
                builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            cert = builder.sign(ca_key, hashes.SHA256())
            return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)

        server = leaf(
            _name("kube-apiserver"),
            ExtendedKeyUsageOID.SERVER_AUTH,
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
        )
        admin = leaf(_name("audioflow-test-admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH, [])
        sa = _key()
        pki = cls(
            ca_cert=folder / "ca.crt",
            server_cert=folder / "apiserver.crt",
            server_key=folder / "apiserver.key",
            admin_cert=folder / "admin.crt",
            admin_key=folder / "admin.key",
            sa_key=folder / "sa.key",
            sa_pub=folder / "sa.pub",
        )
        pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        pki.server_cert.write_bytes(server[0])
        pki.server_key.write_bytes(server[1])
        pki.admin_cert.write_bytes(admin[0])
        pki.admin_key.write_bytes(admin[1])
        pki.sa_key.write_bytes(_pem_key(sa))
        pki.sa_pub.write_bytes(
            sa.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        for key_file in (pki.server_key, pki.admin_key, pki.sa_key):
            key_file.chmod(0o600)
        return pki


def kubeconfig(server: str, ca: Path, user: dict[str, Any], name: str = "audioflow-test") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


# ---- the processes ----------------------------------------------------------------------------------


class Process:
    """A control-plane process with its output in a log file, for the failure message."""

    def __init__(self, name: str, argv: Sequence[str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class ControlPlane:
    workdir: Path
    server: str
    pki: Pki
    admin_kubeconfig: Path
    processes: list[Process]

    # Clients ------------------------------------------------------------------------------------------
    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """kubectl at the control plane's own version, as the admin unless ``kubeconfig`` says."""
        result = subprocess.run(
            [str(binary("kubectl")), "--kubeconfig", str(kubeconfig or self.admin_kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def apply(self, *manifests: dict[str, Any], namespace: str | None = None) -> None:
        ns = ["--namespace", namespace] if namespace else []
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(manifests)})
        self.kubectl("apply", "--server-side", "--force-conflicts", *ns, "-f", "-", input=body)

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        ns = ["--namespace", namespace] if namespace else []
        result = self.kubectl("get", resource, name, *ns, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise AssertionError(f"kubectl get {resource} {name}: {result.stderr}")
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def items(self, resource: str, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        extra = ["-l", selector] if selector else []
        result = self.kubectl("get", resource, "--namespace", namespace, *extra, "-o", "json")
        items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
        return items

    def token(self, service_account: str, namespace: str, duration: str = "1h") -> str:
        """A token for ``service_account``, issued by the API server (TokenRequest)."""
        return self.kubectl(
            "create", "token", service_account, "--namespace", namespace, "--duration", duration
        ).stdout.strip()

    def kubeconfig_for(self, service_account: str, namespace: str, path: Path) -> Path:
        """A kubeconfig that authenticates as ``service_account`` (a TokenRequest token, never the admin
        certificate), so RBAC decides what it may do."""
        user = {"token": self.token(service_account, namespace)}
        path.write_text(json.dumps(kubeconfig(self.server, self.pki.ca_cert, user)))
        return path

    def can_i(self, verb: str, resource: str, namespace: str, as_user: str, subresource: str = "") -> bool:
        args = ["auth", "can-i", verb, resource, "--namespace", namespace, "--as", as_user]
        if subresource:
            args += ["--subresource", subresource]
        result = self.kubectl(*args, check=False)
        return result.stdout.strip() == "yes"

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return context

    def check_alive(self) -> None:
        for process in self.processes:
            process.check_alive()

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def _wait_ready(url: str, context: ssl.SSLContext, processes: list[Process], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for process in processes:
            process.check_alive()
        try:
            with urllib.request.urlopen(url, context=context, timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout} s ({last})")


def start(workdir: Path) -> ControlPlane:
    """etcd, kube-apiserver and kube-controller-manager on free ports of 127.0.0.1, ready when this
    returns (``/readyz`` answers 200 and the default namespace's ServiceAccount exists)."""
    workdir.mkdir(parents=True, exist_ok=True)
    pki = Pki.create(workdir / "pki")
    processes: list[Process] = []
    try:
        etcd_port, peer_port, api_port, kcm_port = (free_port() for _ in range(4))
        etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
        processes.append(
            Process(
                "etcd",
                [
                    str(binary("etcd")),
                    "--name=test",
                    f"--data-dir={workdir / 'etcd'}",
                    f"--listen-client-urls={etcd_url}",
                    f"--advertise-client-urls={etcd_url}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=test={peer_url}",
                    "--unsafe-no-fsync",  # a throwaway store: speed over durability
                    "--log-level=warn",
                ],
                workdir / "etcd.log",
            )
        )
        server = f"https://127.0.0.1:{api_port}"
        processes.append(
            Process(
                "kube-apiserver",
                [
                    str(binary("kube-apiserver")),
                    f"--etcd-servers={etcd_url}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    f"--secure-port={api_port}",
                    f"--cert-dir={workdir / 'certs'}",
                    f"--tls-cert-file={pki.server_cert}",
                    f"--tls-private-key-file={pki.server_key}",
                    f"--client-ca-file={pki.ca_cert}",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={pki.sa_pub}",
                    f"--service-account-signing-key-file={pki.sa_key}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--authorization-mode=RBAC",
                    "--endpoint-reconciler-type=none",
                    "--allow-privileged=false",
                    "--v=1",
                ],
                workdir / "kube-apiserver.log",
            )
        )
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        _wait_ready(f"{server}/readyz", context, processes, 90)
        admin = workdir / "admin.kubeconfig"
        admin.write_text(
            json.dumps(
                kubeconfig(
                    server,
                    pki.ca_cert,
                    {"client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)},
                )
            )
        )
        processes.append(
            Process(
                "kube-controller-manager",
                [
                    str(binary("kube-controller-manager")),
                    f"--kubeconfig={admin}",
                    f"--authentication-kubeconfig={admin}",
                    f"--authorization-kubeconfig={admin}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={kcm_port}",
                    f"--cert-dir={workdir / 'kcm-certs'}",
                    f"--root-ca-file={pki.ca_cert}",
                    f"--service-account-private-key-file={pki.sa_key}",
                    "--use-service-account-credentials=true",
                    "--controllers=*",
                    "--v=1",
                ],
                workdir / "kube-controller-manager.log",
            )
        )
        plane = ControlPlane(workdir, server, pki, admin, processes)
        deadline = time.monotonic() + 60
        while plane.get("serviceaccount", "default", "default") is None:
            plane.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("the controller manager made no default ServiceAccount within 60 s")
            time.sleep(0.3)
        return plane
    except BaseException:
        for process in reversed(processes):
            process.stop()
        raise


@contextlib.contextmanager
def running(workdir: Path) -> Iterator[ControlPlane]:
    plane = start(workdir)
    try:
        yield plane
    finally:
        plane.stop()
