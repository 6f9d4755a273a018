"""The way most users run the notebooks: a real Jupyter server, a kernel started over its REST API, every cell
executed over the kernel's websocket (as JupyterLab does), on the smoke profile. nbval covers the notebooks cell
by cell too, but in-process; this checks the server path: no error output, figures come back as image/png."""
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("jupyter_server", reason="jupyter_server is not installed (pip install jupyterlab)")
websocket = pytest.importorskip("tornado.websocket", reason="tornado (a jupyter_server dependency) is missing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base, token, path, method="GET", body=None):
    req = urllib.request.Request(f"{base}{path}", method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


async def execute_all(ws_url, token, sources, timeout=300):
    """Run each source on the kernel in turn; per cell, the iopub messages of its execution."""
    conn = await websocket.websocket_connect(
        websocket.httpclient.HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    session = uuid.uuid4().hex
    results = []
    for source in sources:
        msg_id = uuid.uuid4().hex
        await conn.write_message(json.dumps(dict(
            header=dict(msg_id=msg_id, username="test", session=session, msg_type="execute_request", version="5.3"),
            parent_header={}, metadata={}, channel="shell",
            content=dict(code=source, silent=False, store_history=True, user_expressions={}, allow_stdin=False))))
        outputs, deadline = [], time.monotonic() + timeout
        while True:
            raw = await asyncio.wait_for(conn.read_message(), max(1, deadline - time.monotonic()))
            assert raw is not None, "the kernel's websocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id or msg.get("channel") != "iopub":
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            outputs.append(msg)
        results.append(outputs)
    conn.close()
    return results


def test_a_notebook_runs_through_a_jupyter_server(tmp_path):
    import papermill as pm
    prepared = tmp_path / "00_overview.ipynb"  # the parameters a user would type, injected by papermill
    pm.execute_notebook(str(ROOT / "notebooks" / "00_overview.ipynb"), str(prepared), prepare_only=True,
                        parameters=dict(profile="smoke", dataset="digits", results_dir=str(tmp_path / "results")),
                        kernel_name="python3")
    sources = [c.source for c in nbformat.read(prepared, as_version=4).cells if c.cell_type == "code"]

    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
         f"--ServerApp.root_dir={ROOT / 'notebooks'}", "--ServerApp.log_level=WARN",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],  # CI containers run as root
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                api(base, token, "/api/status")
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.5)
        else:
            pytest.fail("the Jupyter server did not answer within 60 s")
        kernel = api(base, token, "/api/kernels", "POST", dict(name="python3", path="00_overview.ipynb"))
        ws_url = f"ws://127.0.0.1:{port}/api/kernels/{kernel['id']}/channels"
        per_cell = asyncio.run(execute_all(ws_url, token, sources))
        api(base, token, f"/api/kernels/{kernel['id']}", "DELETE")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()

    errors = [(i, m["content"]["ename"], m["content"]["evalue"]) for i, out in enumerate(per_cell)
              for m in out if m["msg_type"] == "error"]
    assert not errors, errors
    streams = "".join(m["content"]["text"] for out in per_cell for m in out if m["msg_type"] == "stream")
    assert "Traceback" not in streams and "PosixPath(" not in json.dumps(per_cell)
    images = [m for out in per_cell for m in out
              if m["msg_type"] in ("display_data", "execute_result") and "image/png" in m["content"]["data"]]
    assert len(images) >= 2, "the overview and sample figures come back as PNGs"
    assert (tmp_path / "results" / "figures" / "00_overview.png").exists()
