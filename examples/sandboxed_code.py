# needs: sandbox
"""Code an agent wrote, run in the ACGS sandbox: the constitution decides the call (the
catalogue's ``run_code``: language and code), the sandbox controller admits the run by its own
decision and runs it (bubblewrap, limits, no network), and each side records the other's
decision id. Needs root and bubblewrap. The controller runs in this process here; in production
it is ``acgs serve --service sandbox`` (:8001): ``acgs.code_tool(guard, "http://127.0.0.1:8001")``.
"""

import tempfile
from pathlib import Path

import acgs
from acgs.services.sandbox import SandboxService, SandboxSettings

with tempfile.TemporaryDirectory() as data:
    sandbox = SandboxService(SandboxSettings.from_env(data_dir=Path(data), pool_size=0))
    sandbox.start()
    guard = acgs.Guard(agent_id="coder", trusted={"agent": {"trust_level": 0.9}})
    run_code = acgs.code_tool(guard, sandbox)
    result = run_code("print(sum(range(10)))")
    print(f"{result['status']}, exit code {result['exit_code']}: {result['stdout'].strip()}")
    print(f"execution {result['execution_id']} ran for guard decision {result['tool_decision_id']}")
    try:
        run_code("puts 1", language="ruby")  # never reaches the sandbox
    except acgs.ToolDenied as denied:
        print(f"ruby denied: {'; '.join(denied.reasons)} (decision {denied.decision_id})")
    sandbox.close()
