"""A second, private Docker engine that a test may stop and start without disturbing anything else.

The fault tests need an engine that goes away while kernels run. Stopping the machine's own
dockerd would kill every other test's containers (and CI runs them in one session), so these
tests run their own dockerd: the same Debian binary with its own data root, exec root, socket and
pid file, no iptables rules (the main engine owns those), a private address pool, and a default
bridge of its own. (Not ``--bridge none``: a dockerd started so deletes the host's docker0, the
main engine's default bridge.) Images come from the main engine (``docker save | docker load``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import docker


BRIDGE_ADDRESS = "10.213.255.1"


class DisposableEngine:
    """``start()``/``stop()`` a private dockerd rooted in ``folder``; ``url`` is its DOCKER_HOST."""

    def __init__(self, folder: str, tcp_port: int | None = None, hidden: str | None = None) -> None:
        self.folder = folder
        self.socket = os.path.join(folder, "docker.sock")
        self.url = f"unix://{self.socket}"
        # Also on a TCP address of this host that is not loopback (the bridge's): an engine
        # "on another host" as far as the provisioner can tell, behind mutual TLS as Docker's
        # docs ask of an engine on the network: only a client with a certificate of its CA gets
        # in (``client_certs``: DOCKER_CERT_PATH for DOCKER_TLS_VERIFY=1).
        self.tcp_url = f"tcp://{BRIDGE_ADDRESS}:{tcp_port}" if tcp_port else None
        self.client_certs = os.path.join(folder, "client-certs")
        # A folder of this host that the engine does not see (an empty tmpfs over it in the
        # engine's own mount namespace): a path that exists here and not on "its host".
        self.hidden = hidden
        self.pidfile = os.path.join(folder, "docker.pid")
        self.log_path = os.path.join(folder, "dockerd.log")
        self.process: subprocess.Popen | None = None
        self.bridge = "mlcfault0"
        self._interfaces_before = _bridge_interfaces()

    def _ensure_bridge(self) -> None:
        if subprocess.run(["ip", "link", "show", self.bridge], capture_output=True).returncode == 0:
            return
        for argv in (
            ["ip", "link", "add", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
        ):
            subprocess.run(argv, check=True, capture_output=True)

    def start(self, timeout: float = 60) -> None:
        """Start dockerd and wait until it answers. It keeps its containers, images and volumes
        between starts, not its networks: a dockerd 20.10 that finds a default bridge network
        of its own from an earlier start deletes the host's docker0 (the main engine's)."""
        self._ensure_bridge()
        shutil.rmtree(os.path.join(self.folder, "data", "network"), ignore_errors=True)
        argv = [
            "dockerd",
            "--data-root", os.path.join(self.folder, "data"),
            "--exec-root", os.path.join(self.folder, "exec"),
            "--host", self.url,
            *(["--host", self.tcp_url, *self._tls_options()] if self.tcp_url else []),
            "--pidfile", self.pidfile,
            "--bridge", self.bridge,
            "--iptables=false",
            "--ip-masq=false",
            "--default-address-pool", "base=10.214.0.0/16,size=24",
        ]
        if self.hidden:
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'mount -t tmpfs mlc-hidden "$0" && exec "$@"', self.hidden, *argv]
        with open(self.log_path, "ab") as log:
            # Its own session: a signal meant for pytest never reaches it, and it outlives nothing.
            self.process = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"the disposable dockerd exited ({self.process.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the disposable dockerd did not answer within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def _tls_options(self) -> list[str]:
        """dockerd's --tlsverify options; a CA, the engine's certificate (for its TCP address) and
        a client's, made once with openssl (EC P-256 keys, valid two days)."""
        server = os.path.join(self.folder, "server-certs")
        if not os.path.exists(os.path.join(self.client_certs, "key.pem")):
            for folder in (server, self.client_certs):
                os.makedirs(folder, mode=0o700, exist_ok=True)
            ca_key = os.path.join(server, "ca-key.pem")

            def openssl(*args: str) -> None:
                subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

            def signed(folder: str, key: str, cert: str, name: str, extensions: str) -> None:
                csr, ext = os.path.join(folder, f"{name}.csr"), os.path.join(folder, f"{name}.ext")
                with open(ext, "w") as f:
                    f.write(extensions)
                openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                        "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
                openssl("x509", "-req", "-in", csr, "-CA", os.path.join(server, "ca.pem"), "-CAkey", ca_key,
                        "-CAcreateserial", "-days", "2", "-out", cert, "-extfile", ext)

            openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", ca_key, "-out", os.path.join(server, "ca.pem"), "-days", "2", "-subj", "/CN=mlc-test-ca")
            signed(server, os.path.join(server, "key.pem"), os.path.join(server, "cert.pem"), "mlc-test-engine",
                   f"subjectAltName=IP:{BRIDGE_ADDRESS}\nextendedKeyUsage=serverAuth\n")
            signed(self.client_certs, os.path.join(self.client_certs, "key.pem"),
                   os.path.join(self.client_certs, "cert.pem"), "mlc-test-client", "extendedKeyUsage=clientAuth\n")
            shutil.copy(os.path.join(server, "ca.pem"), os.path.join(self.client_certs, "ca.pem"))
        return ["--tlsverify", "--tlscacert", os.path.join(server, "ca.pem"),
                "--tlscert", os.path.join(server, "cert.pem"), "--tlskey", os.path.join(server, "key.pem")]

    def stop(self, timeout: float = 60) -> float:
        """Stop dockerd as an operator does (SIGTERM: it stops its containers first); returns
        the seconds it took to exit."""
        began = time.monotonic()
        if self.process is None or self.process.poll() is not None:
            return 0.0
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return time.monotonic() - began

    @classmethod
    def running(cls, folder: str, image: str, **options):
        """A started engine holding ``image`` for a module's tests, destroyed after (a generator
        for a pytest fixture to yield from)."""
        engine = cls(folder, **options)
        engine.start()
        try:
            engine.load_image(image)
            yield engine
        finally:
            engine.destroy()

    def server_config(self, url: str | None = None) -> dict:
        """pytest-jupyter's server config with kernels on this engine (``url``: another of its addresses)."""
        return {
            "ServerApp": {"jpserver_extensions": {"jupyter_mlcontainer": True}},
            "MLContainerApp": {"reap_orphans_on_start": False},
            "MLContainer": {"docker_host": url or self.url},
        }

    def answers(self) -> bool:
        try:
            client = docker.DockerClient(base_url=self.url, timeout=5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False

    def load_image(self, image: str, source_url: str | None = None) -> None:
        """Copy ``image`` from the main engine (``source_url``: its address) unless present."""
        if subprocess.run(["docker", "-H", self.url, "image", "inspect", image], capture_output=True).returncode == 0:
            return
        source = ["docker"] + (["-H", source_url] if source_url else [])
        save = subprocess.Popen([*source, "save", image], stdout=subprocess.PIPE)
        try:
            subprocess.run(["docker", "-H", self.url, "load", "--quiet"], stdin=save.stdout, check=True, capture_output=True)
        finally:
            save.stdout.close()
            save.wait()
        if save.returncode:
            raise RuntimeError(f"docker save {image} failed ({save.returncode})")

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except OSError:
            return ""

    def destroy(self) -> None:
        """Stop it and remove everything it stored (containers, images, volumes)."""
        if self.answers():
            client = docker.DockerClient(base_url=self.url, timeout=30)
            try:
                for container in client.containers.list(all=True):
                    container.remove(force=True)
                for network in client.networks.list():
                    if network.name not in ("bridge", "host", "none"):
                        network.remove()  # its bridge interface would outlive the engine
            finally:
                client.close()
        self.stop()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        # Networks it forgot at a restart (see start) leave their bridges behind: remove the
        # ones that appeared since it was made, unless the main engine has such a network.
        main = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True).stdout.split()
        for name in _bridge_interfaces() - self._interfaces_before:
            if not any(name[3:].startswith(network_id) for network_id in main):
                subprocess.run(["ip", "link", "del", name], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def _bridge_interfaces() -> set[str]:
    """Names of the host's bridge interfaces that dockerd made for user networks (br-<id>)."""
    return {name for name in os.listdir("/sys/class/net") if name.startswith("br-")}
