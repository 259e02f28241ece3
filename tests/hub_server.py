"""A local stand-in for the Hugging Face Hub: real HTTP servers on 127.0.0.1.

It answers the requests huggingface_hub makes (read from its source, version in the dev venv):

* ``GET /api/models/{org}/{name}[/revision/{rev}][?blobs=true]``: repo info, with the commit
  (``sha``) and the files (``siblings``, with sizes and LFS data when ``blobs`` is asked);
* ``GET /api/models/{org}/{name}/tree/{rev}``: the file tree (``snapshot_download``);
* ``HEAD``/``GET /{org}/{name}/resolve/{rev}/{file}``: small files directly, with ``ETag``,
  ``X-Repo-Commit`` and ``Content-Length``; LFS files (``*.safetensors``) by a 302 redirect
  to a second server on another port, the "CDN", with ``X-Linked-Etag``/``X-Linked-Size``,
  as the Hub redirects to its storage host;
* ``Range: bytes=a-b`` on every file body: 206 Partial Content with ``Content-Range``.

Errors carry the ``X-Error-Code`` header huggingface_hub maps to its exceptions
(``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``). Private repos
answer 401 ``RepoNotFound`` unless the request has ``Authorization: Bearer <token>``.

Every request is logged with the body bytes sent, so tests measure transfers on the server.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True)
class Logged:
    """One request as the server saw it."""

    server: str  #: "hub" or "cdn"
    method: str
    path: str
    status: int
    range: str | None
    authorization: str | None
    sent: int  #: body bytes sent


@dataclass
class Repo:
    """One repo: commits (file name -> content) and refs (branch or tag -> commit)."""

    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    token: str | None = None  #: private: only this bearer token may read it
    gated: bool = False  #: listed to anyone, files refused (403 GatedRepo)


def files_of(folder: Path) -> dict[str, bytes]:
    """The files of a checkpoint folder, as a repo commit."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _git_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs(name: str) -> bool:
    return name.endswith(".safetensors")


class HubServer:
    """The fake Hub and its CDN; use as a context manager (``with HubServer() as hub``)."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.log: list[Logged] = []
        self._lock = threading.Lock()
        self._blobs: dict[str, bytes] = {}  #: sha256 -> content, what the CDN serves
        self._servers: list[ThreadingHTTPServer] = []
        self.ranges = True  #: honour Range headers (False: answer 200 with the whole file)
        self.url = self.cdn_url = ""

    # ------------------------------------------------------------------ repos

    def add(
        self,
        repo_id: str,
        files: Mapping[str, bytes],
        *,
        refs: tuple[str, ...] = ("main",),
        token: str | None = None,
        gated: bool = False,
    ) -> str:
        """Add a commit to ``repo_id`` (created if new) and point ``refs`` at it; returns the
        commit hash."""
        repo = self.repos.setdefault(repo_id, Repo(token=token, gated=gated))
        digest = hashlib.sha1(repo_id.encode())
        for name in sorted(files):
            digest.update(name.encode() + hashlib.sha256(files[name]).digest())
        commit = digest.hexdigest()
        repo.commits[commit] = dict(files)
        for ref in refs:
            repo.refs[ref] = commit
        for name, data in files.items():
            if _is_lfs(name):
                self._blobs[hashlib.sha256(data).hexdigest()] = data
        return commit

    def total_bytes(self, repo_id: str, ref: str = "main") -> int:
        """The size of every file of the repo at ``ref``."""
        repo = self.repos[repo_id]
        return sum(map(len, repo.commits[repo.refs[ref]].values()))

    # ------------------------------------------------------------------ log

    def clear_log(self) -> None:
        """Forget the requests so far."""
        with self._lock:
            self.log.clear()

    def requests(self) -> list[Logged]:
        """The requests so far."""
        with self._lock:
            return list(self.log)

    def bytes_sent(self) -> int:
        """Body bytes sent by both servers since the log was last cleared."""
        return sum(r.sent for r in self.requests())

    def _record(self, entry: Logged) -> None:
        with self._lock:
            self.log.append(entry)

    # ------------------------------------------------------------------ serving

    def __enter__(self) -> HubServer:
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, role))
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        self.url, self.cdn_url = (f"http://127.0.0.1:{s.server_address[1]}" for s in self._servers)
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    # ------------------------------------------------------------------ routes

    def resolve_ref(self, repo: Repo, rev: str) -> str | None:
        """A branch, tag or full commit hash -> the commit, or None."""
        if rev in repo.refs:
            return repo.refs[rev]
        return rev if rev in repo.commits else None

    def model_info(self, repo_id: str, commit: str, blobs: bool) -> dict[str, Any]:
        """What ``GET /api/models/...`` returns."""
        repo = self.repos[repo_id]
        siblings = []
        for name, data in sorted(repo.commits[commit].items()):
            entry: dict[str, Any] = {"rfilename": name}
            if blobs:
                entry.update(size=len(data), blobId=_git_sha(data))
                if _is_lfs(name):
                    sha = hashlib.sha256(data).hexdigest()
                    entry["lfs"] = {"sha256": sha, "size": len(data), "pointerSize": 134}
            siblings.append(entry)
        return {
            "_id": repo_id,
            "id": repo_id,
            "modelId": repo_id,
            "sha": commit,
            "private": repo.token is not None,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "tags": [],
            "siblings": siblings,
        }

    def tree(self, repo_id: str, commit: str) -> list[dict[str, Any]]:
        """What ``GET /api/models/.../tree/{rev}`` returns."""
        out = []
        for name, data in sorted(self.repos[repo_id].commits[commit].items()):
            entry: dict[str, Any] = {"type": "file", "oid": _git_sha(data), "size": len(data)}
            entry["path"] = name
            if _is_lfs(name):
                sha = hashlib.sha256(data).hexdigest()
                entry["lfs"] = {"oid": sha, "size": len(data), "pointerSize": 134}
            out.append(entry)
        return out

    def blob(self, sha256: str) -> bytes | None:
        """A file body the CDN serves."""
        return self._blobs.get(sha256)


def _handler(hub: HubServer, role: str) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.hub, Handler.role = hub, role
    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the Hub; every answer has Content-Length
    hub: HubServer
    role: str

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the hub keeps its own log."""

    def do_GET(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route()

    # ------------------------------------------------------------------ dispatch

    def _route(self) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        query = parse_qs(url.query)
        if self.role == "cdn":
            data = self.hub.blob(parts[-1]) if parts[:1] == ["blobs"] else None
            if data is None:
                self._send(404, b"not found")
            else:
                self._send_file(data, {})
            return
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            self._api("/".join(parts[2:4]), parts[4:], query)
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]))
        else:
            self._send(404, b"no such route")

    def _repo(self, repo_id: str) -> Repo | None:
        """The repo if this request may see it; otherwise the error has been sent."""
        repo = self.hub.repos.get(repo_id)
        auth = self.headers.get("Authorization")
        if repo is None or (repo.token is not None and auth != f"Bearer {repo.token}"):
            status = 404 if repo is None and auth is None else 401
            body = b'{"error":"Repository not found"}'
            self._send(status, body, {"X-Error-Code": "RepoNotFound"})
            return None
        return repo

    def _api(self, repo_id: str, rest: list[str], query: dict[str, list[str]]) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        rev = rest[1] if len(rest) >= 2 and rest[0] in ("revision", "tree") else "main"
        commit = self.hub.resolve_ref(repo, rev)
        if commit is None:
            err = b'{"error":"Invalid rev id"}'
            self._send(404, err, {"X-Error-Code": "RevisionNotFound"})
            return
        if rest[:1] == ["tree"]:
            body: Any = self.hub.tree(repo_id, commit)
        else:
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            body = self.hub.model_info(repo_id, commit, blobs)
        self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _resolve(self, repo_id: str, rev: str, name: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        commit = self.hub.resolve_ref(repo, rev)
        if commit is None:
            self._send(404, b"Invalid rev id", {"X-Error-Code": "RevisionNotFound"})
            return
        headers = {"X-Repo-Commit": commit}
        if repo.gated:
            headers["X-Error-Code"] = "GatedRepo"
            self._send(403, b"Access to this model is restricted", headers)
            return
        data = repo.commits[commit].get(name)
        if data is None:
            headers["X-Error-Code"] = "EntryNotFound"
            self._send(404, b"Entry not found", headers)
            return
        if _is_lfs(name):
            sha = hashlib.sha256(data).hexdigest()
            headers.update(
                {
                    "Location": f"{self.hub.cdn_url}/blobs/{sha}?expires=never",
                    "X-Linked-Etag": f'"{sha}"',
                    "X-Linked-Size": str(len(data)),
                    "ETag": f'"{_git_sha(data)}"',
                }
            )
            self._send(302, b"", headers)
            return
        headers["ETag"] = f'"{_git_sha(data)}"'
        self._send_file(data, headers)

    # ------------------------------------------------------------------ answers

    def _send_file(self, data: bytes, headers: dict[str, str]) -> None:
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        spec = self.headers.get("Range")
        m = _RANGE.fullmatch(spec.strip()) if spec else None
        if m is None or not (m[1] or m[2]) or not self.hub.ranges:  # the whole file
            self._send(200, data, headers)
            return
        size = len(data)
        if m[1]:
            begin, end = int(m[1]), min(size - 1, int(m[2])) if m[2] else size - 1
        else:
            begin, end = max(0, size - int(m[2])), size - 1
        if begin >= size or begin > end:
            self._send(416, b"", {**headers, "Content-Range": f"bytes */{size}"})
            return
        headers["Content-Range"] = f"bytes {begin}-{end}/{size}"
        self._send(206, data[begin : end + 1], headers)

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        sent = 0
        try:
            while self.command != "HEAD" and sent < len(body):
                sent += self.wfile.write(body[sent : sent + (1 << 20)]) or 0
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading
            self.close_connection = True
        finally:
            self.hub._record(
                Logged(
                    server=self.role,
                    method=self.command,
                    path=self.path,
                    status=status,
                    range=self.headers.get("Range"),
                    authorization=self.headers.get("Authorization"),
                    sent=sent,
                )
            )


@contextmanager
def serving() -> Iterator[HubServer]:
    """``with serving() as hub``: a started fake Hub, stopped afterwards."""
    with HubServer() as hub:
        yield hub
