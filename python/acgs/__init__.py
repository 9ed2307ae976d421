"""ACGS: constitutional governance for AI agents.

``acgs.Engine`` loads an OPA bundle compiled to WebAssembly and evaluates policy decisions in
the Rust core, with the GIL released.
"""

from pathlib import Path

from acgs import errors
from acgs._acgs import Engine, __version__

__all__ = ["Engine", "__version__", "default_bundle_path", "errors"]

_BUNDLES = Path(__file__).parent / "bundles"


def default_bundle_path() -> Path:
    """The policy bundle shipped inside the package, so a wheel works on its own."""
    return _BUNDLES / "example.tar.gz"
