"""A stand-in for the Hugging Face Hub on 127.0.0.1: the endpoints huggingface_hub's real calls use.

Model search (with Link-header paging and sorting), model info (with file sizes, blob ids and, for weights files,
Git LFS sha256), the file tree, and file download (HEAD and GET, ETag, X-Repo-Commit, Range for resume). Some repos
answer with errors: gated (403), private (401 without the right token), rate-limited (429), missing (404). `slow`
makes downloads trickle so a test can cancel one half-way.

A misbehaving Hub, for the requests whose "METHOD /path" contains `fault_on` ("" for all): `stall` holds each one
that long before answering (a Hub that accepts the connection and says nothing), `status` answers it with that
error (500, 502, 503, 404, ...); `cut_after` drops a download half-way, and `cut_then` is the status every later
request for files gets (so the download cannot simply be resumed). `hold`, an Event, keeps them waiting until the
test sets it.

Uploads, as huggingface_hub's create_repo and upload_folder make them: POST /api/repos/create (the token must be
TOKEN, the namespace one of `writers`, else 401 or 403), /api/validate-yaml, preupload (each file's upload mode, and
its oid when the repo already holds it, so unchanged files are not sent again), and the NDJSON commit, whose
`file` lines carry base64 content and `lfsFile` lines name an object sent before. By default every file is
"regular": with hf_xet installed, the client sends "lfs" files through Xet storage, which this stand-in does not
speak. With `lfs` set, weights files are "lfs" and go through the Git LFS batch API, a PUT and a verify, the way a
client without Xet (HF_HUB_DISABLE_XET) sends them. `commits` records each commit: repo, summary, paths.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlparse

PAGE = 3
TOKEN = "hf_test_token"


@dataclass
class Repo:
    id: str
    files: dict[str, bytes] = field(default_factory=dict)
    downloads: int = 0
    likes: int = 0
    last_modified: str = "2026-01-01T00:00:00.000Z"
    pipeline_tag: str = "fill-mask"
    tags: list[str] = field(default_factory=lambda: ["transformers", "en", "license:apache-2.0"])
    config: dict = field(default_factory=dict)
    parameters: int | None = None
    gated: bool = False
    private: bool = False
    error: int = 0                 # answer every request with this status (e.g. 429)

    @property
    def sha(self) -> str:
        digest = hashlib.sha1(self.id.encode())
        for name in sorted(self.files):
            digest.update(name.encode() + self.files[name])
        return digest.hexdigest()


def oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".h5", ".msgpack", ".onnx")


def lfs(name: str, data: bytes) -> dict | None:
    """Git LFS metadata of a weights file, as the Hub gives it (its sha256 is also the file's ETag)."""
    if not name.endswith(LFS_SUFFIXES):
        return None
    return {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}


def etag(name: str, data: bytes) -> str:
    return (lfs(name, data) or {}).get("oid") or oid(data)


def tree_entry(name: str, data: bytes) -> dict:
    entry = {"type": "file", "path": name, "size": len(data), "oid": oid(data)}
    if lfs(name, data):
        entry["lfs"] = lfs(name, data)
    return entry


class StandInHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.datasets: dict[str, Repo] = {}
        self.requests: list[str] = []
        self.slow = 0.0               # seconds to sleep per 4 KiB chunk of a download
        self.delay = 0.0              # seconds before answering any API request (a slow or stuck Hub)
        self.cut_after = 0            # drop the connection after this many bytes of the next file (once)
        self.cut_then = 0             # after that cut, answer every file request with this status
        self.stall = 0.0              # seconds to hold a request matching fault_on before answering it
        self.status = 0               # answer a request matching fault_on with this HTTP status
        self.fault_on = ""            # which requests stall or fail: a part of "METHOD /path", "" for all
        self.hold: threading.Event | None = None    # while set to a clear Event, requests matching fault_on wait
        self.writers = {"tester"}     # namespaces the token may create repos in and commit to
        self.lfs = False              # weights files go through Git LFS (clients without Xet only)
        self.lfs_objects: dict[str, bytes] = {}     # sha256 -> content, sent through the LFS upload URL
        self.commits: list[dict] = []
        self._stopped = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.handle_error = self._handle_error
        # a short poll interval: stop() waits for the serving loop to notice, 0.5 s by default
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def _handle_error(self, request, address) -> None:
        import socketserver
        import sys
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):   # a client gave up: fine
            socketserver.BaseServer.handle_error(self.server, request, address)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo: Repo) -> Repo:
        self.repos[repo.id] = repo
        return repo

    def add_dataset(self, repo: Repo) -> Repo:
        self.datasets[repo.id] = repo
        return repo

    def add_folder(self, repo_id: str, folder: Path, **kwargs) -> Repo:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        config = json.loads(files["config.json"]) if "config.json" in files else {}
        return self.add(Repo(repo_id, files, config=config, **kwargs))

    def start(self) -> "StandInHub":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()           # stalled requests end, so their threads do not outlive the test
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if "Content-Length" not in (headers or {}):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not (head or getattr(self, "is_head", False)) and body:     # a HEAD answer has no body
                    self.wfile.write(body)

            def _json(self, status: int, value, headers: dict | None = None):
                self._send(status, json.dumps(value).encode(), {"Content-Type": "application/json", **(headers or {})})

            def _error(self, status: int, code: str, message: str):
                self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

            def _fault(self) -> bool:
                """Stall or fail this request as the test asked; True when it has been answered."""
                what = f"{self.command} {urlparse(self.path).path}"
                if hub.fault_on not in what:
                    return False
                if hub.stall:
                    hub._stopped.wait(hub.stall)
                while hub.hold is not None and not hub.hold.is_set() and not hub._stopped.is_set():
                    hub.hold.wait(0.05)
                if hub.status:
                    code = {404: "RepoNotFound" if what.split()[1].startswith("/api/") else "EntryNotFound"}
                    self._error(hub.status, code.get(hub.status, ""), f"error {hub.status}")
                    return True
                return hub._stopped.is_set()

            def _repo(self, repo_id: str, kind: str = "models") -> Repo | None:
                repo = (hub.datasets if kind == "datasets" else hub.repos).get(repo_id)
                authorised = self.headers.get("Authorization") == f"Bearer {TOKEN}"
                if repo is None or (repo.private and not authorised):
                    self._error(401 if repo is not None else 404, "RepoNotFound", "Repository not found")
                    return None
                if repo.error:
                    self._error(repo.error, "", "Too many requests" if repo.error == 429 else "error")
                    return None
                return repo

            def do_HEAD(self):
                self._route(head=True)

            def do_GET(self):
                self._route(head=False)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":     # a streamed upload
                    out = b""
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        out += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                    return out
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_PUT(self):
                # the Git LFS basic transfer: the object's content, to the URL the batch answer gave
                self.is_head = False
                body = self._body()
                path = urlparse(self.path).path
                hub.requests.append(f"PUT {path}")
                if self._fault():
                    return
                sha = path.rsplit("/", 1)[-1]
                if not path.startswith("/lfs-upload/") or hashlib.sha256(body).hexdigest() != sha:
                    return self._error(400, "", "content does not match its oid")
                hub.lfs_objects[sha] = body
                self._send(200)

            def do_POST(self):
                self.is_head = False
                body = self._body()
                url = urlparse(self.path)
                parts = [p for p in url.path.split("/") if p]
                hub.requests.append(f"POST {url.path}")
                if self._fault():
                    return
                if parts == ["api", "repos", "create"]:
                    return self._create(json.loads(body))
                if parts == ["api", "validate-yaml"]:
                    return self._json(200, {"errors": [], "warnings": []})
                if len(parts) >= 5 and parts[0] == "api" and parts[4] in ("preupload", "commit"):
                    repo = self._repo("/".join(parts[2:4]), parts[1])
                    if repo is None or not self._may_write(repo.id):
                        return
                    return self._preupload(repo, json.loads(body)) if parts[4] == "preupload" else \
                        self._commit(repo, body)
                if len(parts) == 6 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"]:
                    if not self._may_write(f"{parts[0]}/{parts[1][:-4]}"):
                        return
                    return self._lfs_batch(json.loads(body))
                if parts == ["lfs-verify"]:
                    sha = json.loads(body)["oid"]
                    return self._json(200 if sha in hub.lfs_objects else 404, {})
                # paths-info: the metadata of the listed paths (datasets asks for it while resolving data files)
                form = parse_qs(body.decode())
                repo = self._repo("/".join(parts[2:4]), parts[1])
                if repo is None:
                    return
                paths = form.get("paths", [])
                out = [tree_entry(p, repo.files[p]) for p in paths if p in repo.files]
                out += [{"type": "directory", "path": p, "oid": "0" * 40} for p in paths
                        if p not in repo.files and any(f.startswith(p.rstrip("/") + "/") for f in repo.files)]
                self._json(200, out)

            def _may_write(self, repo_id: str) -> bool:
                """True when the token may write to the repo's namespace; else the refusal has been sent."""
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._error(401, "", "Invalid credentials in Authorization header")
                    return False
                if repo_id.split("/")[0] not in hub.writers:
                    self._error(403, "", f"You don't have the rights to write to {repo_id.split('/')[0]}")
                    return False
                return True

            def _create(self, payload: dict):
                name, kind = payload["name"], payload.get("type") or "model"
                repo_id = f"{payload.get('organization') or 'tester'}/{name}"
                if not self._may_write(repo_id):
                    return
                repos = hub.datasets if kind == "dataset" else hub.repos
                if repo_id in repos:        # the client's exist_ok takes this for "already there"
                    return self._json(409, {"error": "You already created this model repo", "url":
                                            f"{hub.url}/{repo_id}"})
                private = payload.get("visibility") == "private" or payload.get("private") is True
                repos[repo_id] = Repo(repo_id, private=private, pipeline_tag="", tags=[])
                self._json(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})

            def _preupload(self, repo: Repo, payload: dict):
                out = []
                for f in payload["files"]:
                    mode = "lfs" if hub.lfs and lfs(f["path"], b"") and f["size"] else "regular"
                    held = repo.files.get(f["path"])
                    remote = None if held is None else hashlib.sha256(held).hexdigest() if mode == "lfs" else oid(held)
                    out.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": remote})
                self._json(200, {"files": out, "commitOid": repo.sha})

            def _commit(self, repo: Repo, body: bytes):
                added, deleted, summary = {}, [], ""
                for line in body.splitlines():
                    item = json.loads(line)
                    value = item["value"]
                    if item["key"] == "header":
                        summary = value["summary"]
                    elif item["key"] == "file":
                        added[value["path"]] = base64.b64decode(value["content"])
                    elif item["key"] == "lfsFile":
                        if value["oid"] not in hub.lfs_objects:
                            return self._error(422, "", f"{value['path']}: LFS object {value['oid']} not uploaded")
                        added[value["path"]] = hub.lfs_objects[value["oid"]]
                    elif item["key"] in ("deletedFile", "deletedFolder"):
                        deleted.append(value["path"])
                for path in deleted:
                    repo.files = {n: d for n, d in repo.files.items() if n != path and not n.startswith(path + "/")}
                repo.files.update(added)
                hub.commits.append({"repo": repo.id, "summary": summary, "paths": sorted(added)})
                self._json(200, {"commitUrl": f"{hub.url}/{repo.id}/commit/{repo.sha}", "commitOid": repo.sha,
                                 "success": True})

            def _lfs_batch(self, payload: dict):
                objects = []
                for o in payload["objects"]:
                    entry = {"oid": o["oid"], "size": o["size"]}
                    if o["oid"] not in hub.lfs_objects:      # an object the Hub holds already is not sent again
                        entry["actions"] = {"upload": {"href": f"{hub.url}/lfs-upload/{o['oid']}"},
                                            "verify": {"href": f"{hub.url}/lfs-verify"}}
                    objects.append(entry)
                self._json(200, {"transfer": "basic", "objects": objects})

            def _route(self, head: bool):
                self.is_head = head
                url = urlparse(self.path)
                hub.requests.append(f"{self.command} {url.path}")
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if hub.delay and url.path.startswith("/api/"):
                    time.sleep(hub.delay)
                if self._fault():
                    return
                parts = [p for p in url.path.split("/") if p]
                if parts == ["api", "whoami-v2"]:
                    if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                        return self._error(401, "", "Invalid credentials in Authorization header")
                    return self._json(200, {"name": "tester", "type": "user",
                                            "auth": {"accessToken": {"displayName": "app", "role": "read"}}})
                if parts[:2] == ["api", "models"] and len(parts) == 2:
                    return self._search(query)
                if parts[:2] == ["api", "datasets"] and len(parts) == 2:
                    return self._search(query, hub.datasets)
                if parts[0] == "api" and parts[1:2] in (["models"], ["datasets"]) and len(parts) >= 4:
                    repo = self._repo("/".join(parts[2:4]), parts[1])
                    if repo is None:
                        return
                    if len(parts) > 5 and parts[4] == "tree":
                        prefix = "/".join(parts[6:])
                        names = [n for n in sorted(repo.files) if not prefix or n.startswith(prefix + "/")]
                        return self._json(200, [tree_entry(n, repo.files[n]) for n in names])
                    return self._json(200, self._info(repo))
                kind = "models"
                if parts[:1] == ["datasets"]:
                    kind, parts = "datasets", parts[1:]
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo = self._repo("/".join(parts[:2]), kind)
                    if repo is None:
                        return
                    if repo.gated and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                        return self._error(403, "GatedRepo", "Access to this model is restricted")
                    return self._file(repo, "/".join(parts[4:]), head)
                self._error(404, "EntryNotFound", "not found")

            def _summary(self, repo: Repo) -> dict:
                out = {"id": repo.id, "modelId": repo.id, "downloads": repo.downloads, "likes": repo.likes,
                       "lastModified": repo.last_modified, "pipeline_tag": repo.pipeline_tag, "tags": repo.tags,
                       "gated": "manual" if repo.gated else False, "private": repo.private,
                       "library_name": "transformers"}
                if repo.parameters:
                    out["safetensors"] = {"parameters": {"F32": repo.parameters}, "total": repo.parameters}
                return out

            def _info(self, repo: Repo) -> dict:
                return {**self._summary(repo), "sha": repo.sha, "config": repo.config,
                        "siblings": [{"rfilename": n, "size": len(d), "blobId": oid(d),
                                      **({"lfs": {"sha256": lfs(n, d)["oid"], "size": len(d), "pointerSize": 134}}
                                         if lfs(n, d) else {})} for n, d in sorted(repo.files.items())]}

            def _search(self, query: dict, repos: dict | None = None):
                found = [r for r in (hub.repos if repos is None else repos).values() if not r.private and not r.error]
                if query.get("search"):
                    found = [r for r in found if query["search"].lower() in r.id.lower()]
                if query.get("pipeline_tag"):
                    found = [r for r in found if r.pipeline_tag == query["pipeline_tag"]]
                for tag in parse_qs(urlparse(self.path).query).get("filter", []):
                    found = [r for r in found if tag in r.tags]
                key = {"likes": lambda r: r.likes, "lastModified": lambda r: r.last_modified,
                       "last_modified": lambda r: r.last_modified}.get(query.get("sort", ""), lambda r: r.downloads)
                found.sort(key=key, reverse=True)
                start = int(query.get("cursor", 0))
                page = found[start:start + PAGE]
                headers = {}
                if start + PAGE < len(found):
                    rest = {k: v for k, v in parse_qs(urlparse(self.path).query).items() if k != "cursor"}
                    rest["cursor"] = [str(start + PAGE)]
                    headers["Link"] = f'<{hub.url}/api/models?{urlencode(rest, doseq=True)}>; rel="next"'
                self._json(200, [self._summary(r) for r in page], headers)

            def _file(self, repo: Repo, name: str, head: bool):
                data = repo.files.get(name)
                if data is None:
                    return self._error(404, "EntryNotFound", f"{name} not found")
                headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{etag(name, data)}"', "Accept-Ranges": "bytes",
                           "Content-Type": "application/octet-stream",
                           "Content-Disposition": f"attachment; filename=\"{quote(name.split('/')[-1])}\""}
                start = 0
                status = 200
                if self.headers.get("Range", "").startswith("bytes="):
                    start = int(self.headers["Range"][6:].split("-")[0] or 0)
                    hub.requests.append(f"RANGE {name} {start}")
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                body = data[start:]
                headers["Content-Length"] = str(len(body))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if head:
                    return
                cut = hub.cut_after if hub.cut_after and len(body) > hub.cut_after else 0
                if cut:
                    hub.cut_after = 0
                    if hub.cut_then:
                        hub.status, hub.fault_on = hub.cut_then, "/resolve/"
                try:
                    for i in range(0, len(body), 4096):
                        if cut and i >= cut:       # the network fails half-way through the file
                            self.close_connection = True
                            self.wfile.flush()
                            self.connection.shutdown(2)
                            return
                        self.wfile.write(body[i:i + 4096])
                        if hub.slow:
                            self.wfile.flush()
                            time.sleep(hub.slow)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler
