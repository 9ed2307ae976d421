"""The ``acgs`` command line and the one configuration (TOML file + ``ACGS_*`` variables)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from acgs import default_bundle_path
from acgs.cli import cli, find_opa
from acgs.config import ConfigError, load_config, template

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(cli, list(args), env=env, input=input, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


# -- help ----------------------------------------------------------------------------------


def _commands(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    import click

    assert isinstance(group, click.Group)
    out: list[tuple[str, ...]] = []
    for name, command in group.commands.items():
        if command.hidden:
            continue
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out.extend(_commands(command, (*prefix, name)))
    return out


def test_help_lists_every_command_the_issue_names() -> None:
    code, out, _ = run("--help")
    assert code == 0
    for name in ("serve", "eval", "bundle", "audit", "evolution", "sandbox", "config"):
        assert f"  {name} " in out, name
    names = set(_commands(cli))
    for path in [
        ("bundle", "build"),
        ("bundle", "inspect"),
        ("audit", "verify"),
        ("audit", "export"),
        ("audit", "verify-export"),
        ("audit", "checkpoint"),
        ("audit", "archive"),
        ("evolution", "submit"),
        ("evolution", "list"),
        ("evolution", "approve"),
        ("sandbox", "run"),
        ("keys", "create"),
        ("keys", "list"),
        ("keys", "revoke"),
    ]:
        assert path in names, path


def test_every_command_has_help() -> None:
    for path in _commands(cli):
        code, out, _ = run(*path, "--help")
        assert code == 0 and "Usage: " in out, path
        assert "Show this message and exit." in out


def test_version() -> None:
    import acgs

    code, out, _ = run("--version")
    assert code == 0 and acgs.__version__ in out


# -- configuration -------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "acgs.toml"
    path.write_text(text)
    return path


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f'data_dir = "{tmp_path}"\nlog_level = "warning"\n'
        "[policy]\ncache_size = 5\nport = 9100\n[sandbox]\nauto_order = [\"gvisor\", \"bwrap\"]\nmonitor_syscalls = false\n",
    )
    config = load_config(path, environ={"ACGS_POLICY_PORT": "9200"}, overrides={"policy": {"host": "127.0.0.2"}})
    assert config.policy.cache_size == 5
    assert config.policy.port == 9200  # the variable wins over the file
    assert config.policy.host == "127.0.0.2"  # the command line wins over both
    assert config.sandbox.auto_order == ("gvisor", "bwrap") and config.sandbox.monitor_syscalls is False
    # Top-level keys reach every service that has them.
    for section in ("policy", "evolution", "audit", "sandbox"):
        assert getattr(config, section).data_dir == tmp_path
        assert getattr(config, section).log_level == "warning"
    assert config.is_set("policy", "cache_size") and not config.is_set("policy", "cache_ttl")
    assert config.audit.port == 8003  # untouched defaults stay


def test_defaults_share_one_data_directory() -> None:
    config = load_config(None, environ={})
    assert {getattr(config, s).data_dir for s in ("policy", "evolution", "audit", "sandbox")} == {Path(".acgs-data")}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[policy]\ncach_size = 5\n", r"\[policy\]: unknown setting 'cach_size' \(did you mean 'cache_size'\?\)"),
        ("[policy]\ncache_size = \"big\"\n", r"\[policy\] cache_size: expected an integer, got a string 'big'"),
        ("[policy]\ncache_size = -1\n", r"\[policy\] cache_size: -1: must not be negative"),
        ("[polcy]\nport = 1\n", r"unknown setting '\[polcy\]' \(did you mean '\[policy\]'\?\)"),
        ("port = 1\n", r"unknown setting 'port'"),
        ("[sandbox]\nmonitor_syscalls = \"yes please\"\n", r"monitor_syscalls: expected true or false"),
        ("[sandbox]\nauto_order = [\"qemu\"]\n", r"unknown runtimes"),
        ("[audit]\ncheckpoint_interval = true\n", r"checkpoint_interval: expected a number, got a boolean"),
        ("[policy\n", r"not valid TOML"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text), environ={})


def test_bad_variable_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"ACGS_POLICY_CACHE_SIZE='lots'"):
        load_config(None, environ={"ACGS_POLICY_CACHE_SIZE": "lots"})


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "nope.toml", environ={})


def test_config_commands(tmp_path: Path) -> None:
    path = _write(tmp_path, '[audit]\ndatabase_url = "postgresql://acgs:secret@db:5432/acgs"\n[policy]\nport = 9300\n')
    code, out, _ = run("--config", str(path), "config", "show")
    assert code == 0
    shown = json.loads(out)
    assert shown["source"] == str(path) and shown["policy"]["port"] == 9300
    assert ":secret@" not in out and shown["audit"]["database_url"] == "postgresql://acgs:***@db:5432/acgs"
    # ACGS_CONFIG names the file too.
    code, out, _ = run("config", "check", env={"ACGS_CONFIG": str(path)})
    assert code == 0 and str(path) in out
    bad = tmp_path / "bad.toml"
    bad.write_text("[policy]\nworkerz = 2\n")
    code, _, err = run("--config", str(bad), "config", "check")
    assert code == 2 and "unknown setting 'workerz'" in err and "did you mean 'workers'" in err


def test_template_is_a_valid_configuration(tmp_path: Path) -> None:
    text = template()
    for section in ("[policy]", "[evolution]", "[audit]", "[sandbox]"):
        assert section in text
    assert "ACGS_POLICY_CACHE_SIZE" in text
    # Uncommenting every line gives a file the loader accepts with the same values.
    lines = [line[2:].split("  # ")[0] if line.startswith("# ") and " = " in line else line for line in text.splitlines()]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    assert load_config(path, environ={}).policy == load_config(None, environ={}).policy


# -- policies ------------------------------------------------------------------------------


def test_decide_and_eval_on_the_seed_request() -> None:
    code, out, _ = run("decide")
    assert code == 0
    decision = json.loads(out)
    assert decision["allow"] is True and decision["compliance_score"] == 0.96
    code, out, _ = run("eval", "-e", "acgs/main/allow", "-i", "-", input=json.dumps({"action": "x"}))
    assert code == 0 and json.loads(out)["result_set"] == [{"result": False}]
    code, _, err = run("eval", "-i", "{not json")
    assert code == 2 and "cannot read input" in err


def test_bundle_inspect() -> None:
    code, out, _ = run("bundle", "inspect", str(default_bundle_path()))
    info = json.loads(out)
    assert code == 0 and info["constitutional_hash"] == "cdd01ef066bc6cf2"
    assert "acgs/main/decision" in info["entrypoints"] and info["fast_path"]


def _opa_or_skip() -> str:
    import click

    try:
        return find_opa()
    except click.UsageError:
        if os.environ.get("ACGS_BUNDLES_REQUIRED"):
            raise
        pytest.skip("OPA CLI not installed")


def test_bundle_build_compiles_tests_and_checks(tmp_path: Path) -> None:
    _opa_or_skip()
    src = tmp_path / "policy"
    shutil.copytree(ROOT / "policies" / "example", src)
    out = tmp_path / "out" / "example.tar.gz"
    code, stdout, stderr = run("bundle", "build", "-e", "acgs/example/allow", str(src), "-o", str(out))
    assert code == 0, stderr
    built = json.loads(stdout)
    assert out.is_file() and "acgs/example/allow" in built["entrypoints"] and len(built["bundle_digest"]) == 64
    assert "building" in stderr  # the progress bar (its label only, off a terminal)
    # A failing Rego test stops the build before anything is written.
    (src / "broken_test.rego").write_text("package acgs.example_test\n\ntest_fails if { false }\n")
    out.unlink()
    code, _, stderr = run("bundle", "build", "-e", "acgs/example/allow", str(src), "-o", str(out))
    assert code == 1 and "opa test failed" in stderr and not out.exists()
    # An entrypoint the sources do not define is OPA's error, reported.
    code, _, stderr = run("bundle", "build", "--no-test", "-e", "acgs/nothing/here", str(src), "-o", str(out))
    assert code == 1 and "opa build failed" in stderr and not out.exists()
