"""`datagen push` through the real huggingface_hub client against a loopback stand-in of the Hub's API (create
repo, preupload, commit): only the export's files go up, the token is sent but never shown or written."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from agent.export import export
from tests.test_export import copy_run, plan_file, runs  # noqa: F401 - the fixture

pytest.importorskip("huggingface_hub")
TOKEN = "hf_testtokenthatmustnotleak0123456789"
MAX_REQUESTS = 50


class Hub(ThreadingHTTPServer):
    """Just enough of the Hub's API for HfApi.create_repo + upload_folder; stops after MAX_REQUESTS requests."""

    def __init__(self, status: int = 200):
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.status = status
        self.requests: list[tuple[str, str, str]] = []   # method, path, authorization
        self.files: dict[str, bytes] = {}
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=5)


class HubHandler(BaseHTTPRequestHandler):
    server: Hub

    def log_message(self, *args):  # quiet
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's name
        self.server.requests.append(("GET", self.path, self.headers.get("Authorization", "")))
        return self._reply(404, {"error": f"no route {self.path}"})

    def do_POST(self):  # noqa: N802 - http.server's name
        hub = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        hub.requests.append(("POST", self.path, self.headers.get("Authorization", "")))
        if len(hub.requests) > MAX_REQUESTS:
            return self._reply(503, {"error": "stand-in request limit"})
        if hub.status != 200:
            return self._reply(hub.status, {"error": "Invalid credentials in Authorization header"})
        if self.path == "/api/repos/create":
            req = json.loads(body)
            return self._reply(200, {"url": f"{hub.url}/datasets/{req.get('organization')}/{req['name']}"})
        if self.path == "/api/validate-yaml":  # the client sends README.md's front matter for checking first
            content = json.loads(body)["content"]
            meta = yaml.safe_load(content.split("---\n")[1])
            errors = [] if meta.get("configs") and meta.get("license") else [{"message": "configs/license missing"}]
            return self._reply(200 if not errors else 400, {"errors": errors, "warnings": []})
        if "/preupload/" in self.path:
            files = json.loads(body)["files"]
            return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                               for f in files]})
        if "/commit/" in self.path:
            for line in body.decode().splitlines():
                op = json.loads(line)
                if op["key"] == "file":
                    hub.files[op["value"]["path"]] = base64.b64decode(op["value"]["content"])
            return self._reply(200, {"commitUrl": f"{hub.url}/datasets/o/d/commit/abc", "commitOid": "abc"})
        return self._reply(404, {"error": f"no route {self.path}"})


def test_push_uploads_exactly_the_export_and_keeps_the_token_secret(runs, tmp_path, run_cli, monkeypatch):  # noqa: F811
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    export(plan, ledger, folder, fmt="sharegpt", trainer="llama-factory", with_metadata=True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with Hub() as hub:
        r = run_cli("push", str(folder), "--repo-id", "acme/support-data", "--endpoint", hub.url)
    assert r.code == 0, (r.err, hub.requests)
    wanted = {"training_data.jsonl", "validation_data.jsonl", "training_metadata.jsonl", "validation_metadata.jsonl",
              "dataset_info.json", "manifest.json", "README.md", "dataset_info.txt", "report.html"}
    assert set(hub.files) == wanted                            # no ledger.sqlite, log or lock
    for name, content in hub.files.items():
        assert content == (folder / name).read_bytes()
    assert [p for _, p, _ in hub.requests] == ["/api/repos/create", "/api/validate-yaml",
                                               "/api/datasets/acme/support-data/preupload/main",
                                               "/api/datasets/acme/support-data/commit/main"]
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in hub.requests)
    assert "commit/abc" in r.out
    assert TOKEN not in r.out + r.err
    assert not any(TOKEN.encode() in p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_push_refused_by_the_hub_is_one_line_without_the_token(runs, tmp_path, run_cli, monkeypatch):  # noqa: F811
    plan, ledger, folder = copy_run(runs, "chat", tmp_path)
    export(plan, ledger, folder)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with Hub(status=401) as hub:
        r = run_cli("push", str(folder), "--repo-id", "acme/d", "--endpoint", hub.url)
    assert r.code == 1 and r.err.count("\n") == 1
    assert "acme/d" in r.err and "401" in r.err and "HF_TOKEN" in r.err and TOKEN not in r.err + r.out
    r = run_cli("push", str(tmp_path), "--repo-id", "acme/d", "--endpoint", "http://127.0.0.1:9")
    assert r.code == 2 and "no manifest.json" in r.err
