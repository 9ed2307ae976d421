"""Prints the requirements the development environment needs, one per line, from pyproject.toml:
the build requirements, the runtime dependencies, the `test` and `bench` extras, and pip itself.
scripts/lock.sh resolves them into requirements.lock; the package's metadata keeps its ranges for
users."""

import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
extras = project["project"]["optional-dependencies"]
for dep in dict.fromkeys(
    ["pip"] + project["build-system"]["requires"] + project["project"]["dependencies"] + extras["test"] + extras["bench"]
):
    print(dep)
