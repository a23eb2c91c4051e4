"""A Hugging Face hub for the tests: the two answers ``hf_hub_download`` asks for (HEAD: which
blob a file of a revision is, GET: its bytes), from files the test gives, on an address that
kernel containers reach (the kernels' network's gateway: the host side of its bridge).

LFS files answer with ``X-Linked-Etag`` (their SHA-256) as the real hub does; others with their
git blob SHA-1. Every GET of a file's bytes is counted, per file, so a test can tell whether a
kernel downloaded or used what the cache already held."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """``files``: {"org/name": {"path/in/repo": (bytes, is_lfs)}}."""

    def __init__(self, address: str, files: dict[str, dict[str, tuple[bytes, bool]]]) -> None:
        self.files = files
        self.gets: Counter[str] = Counter()  # "org/name/path" -> GETs of its bytes
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _find(self) -> tuple[str, bytes, bool] | None:
                # /<org>/<name>/resolve/<revision>/<path>
                parts = self.path.split("?")[0].lstrip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return None
                repo, path = "/".join(parts[:2]), "/".join(parts[4:])
                found = hub.files.get(repo, {}).get(path)
                return (f"{repo}/{path}", *found) if found else None

            def _headers(self, found) -> None:
                key, data, lfs = found
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                if lfs:
                    self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                    self.send_header("ETag", f'"{git_blob_sha1(b"version https://git-lfs.github.com/spec/v1")}"')
                else:
                    self.send_header("ETag", f'"{git_blob_sha1(data)}"')
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()

            def do_HEAD(self) -> None:  # noqa: N802
                found = self._find()
                if found is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return
                self._headers(found)

            def do_GET(self) -> None:  # noqa: N802
                found = self._find()
                if found is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                hub.gets[found[0]] += 1
                self._headers(found)
                self.wfile.write(found[1])

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.endpoint = f"http://{address}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def kernels_gateway(engine, network: str = "mlcontainer-kernels") -> str:
    """The host's address on the kernels' network (made if it is not there yet)."""
    engine.ensure_kernel_network_sync(network)
    config = engine.api.inspect_network(network)["IPAM"]["Config"]
    return next(entry["Gateway"] for entry in config if entry.get("Gateway"))
