"""A tool call the constitution sends to review: the agent waits inside the call while a
reviewer approves it over REST (the evolution service's workflow); then the call runs, once.

The evolution service runs here on a free loopback port with authentication off (the default
on loopback); in production it is `acgs serve` (:8002), and reviewers use its review page
(/evolution/review) or the REST call printed below. A thread plays the reviewer.
"""

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import httpx

import acgs


def start_evolution_service(data_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    """`acgs serve --service evolution` on a free loopback port; returns it and its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "acgs", "serve", "--service", "evolution", "--host", "127.0.0.1", "--port", str(port)]
    with open(os.path.join(data_dir, "evolution.log"), "wb") as log:
        service = subprocess.Popen(command, env={**os.environ, "ACGS_DATA_DIR": data_dir}, stdout=log, stderr=log)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return service, f"http://127.0.0.1:{port}"
        except httpx.TransportError:
            pass
        if service.poll() is not None:
            break
        time.sleep(0.1)
    service.terminate()
    sys.exit(f"the evolution service did not start: see {log.name}")


def reviewer(evolution: str) -> None:
    """What a person does: find the pending request, read it, approve it."""
    with httpx.Client(base_url=evolution, headers={"X-ACGS-Identity": "alice", "X-ACGS-Role": "reviewer"}) as http:
        while not (pending := http.get("/evolution/requests", params={"status": "pending"}).json()["items"]):
            time.sleep(0.1)
        request = pending[0]
        print("reviewer sees:", request["submission"]["tool"], request["submission"]["arguments"], "from", request["agent_id"])
        print("  because:", "; ".join(request["reasons"]))
        print(f"reviewer runs: curl -X POST {evolution}/evolution/requests/{request['request_id']}/approve "
              """-H 'X-ACGS-Identity: alice' -H 'X-ACGS-Role: reviewer' --json '{"reason": "looks right"}'""")
        http.post(f"/evolution/requests/{request['request_id']}/approve", json={"reason": "looks right"}).raise_for_status()


with tempfile.TemporaryDirectory(prefix="acgs-example-") as data_dir:
    service, evolution = start_evolution_service(data_dir)
    try:
        guard = acgs.Guard(agent_id="triage-agent", approver=acgs.ReviewApprover(evolution, timeout=30, poll=0.2))

        @guard.tool
        def http_post(url: str, body: str) -> str:
            return f"201 Created at {url}"

        threading.Thread(target=reviewer, args=(evolution,), daemon=True).start()
        print("agent waits for a reviewer ...")
        print("agent:", http_post("https://api.github.com/repos/acme/app/issues/7/comments", "Fixed in 1.4.2"))
    finally:
        service.terminate()
        service.wait()
