"""Config: file, environment overrides, ${VAR}, one-line errors; and the pure core's imports."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sgwatch import config
from sgwatch.errors import InputError

CORE = Path(__file__).resolve().parent.parent / "sgwatch" / "core"
IO_MODULES = {
    "os",
    "io",
    "json",
    "sqlite3",
    "socket",
    "urllib",
    "http",
    "pathlib",
    "subprocess",
    "requests",
    "structlog",
    "logging",
    "ruamel",
    "yaml",
    "click",
    "rich",
    "prometheus_client",
    "apscheduler",
    "alibabacloud_ecs20140526",
    "alibabacloud_credentials",
    "alibabacloud_tea_openapi",
    "darabonba",
}


def test_the_core_imports_no_io_library() -> None:
    for path in CORE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert name.split(".")[0] not in IO_MODULES, f"{path.name} imports {name}"
                assert not name.startswith("sgwatch.") or name.startswith("sgwatch.core"), f"{path.name}: {name}"


def test_file_then_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("baseline: b/\nregions: [cn-hangzhou]\nscan: {concurrency: 4}\ninterval: 60\n")
    loaded = config.load(
        cfg,
        environ={
            "SGWATCH_SCAN__CONCURRENCY": "16",
            "SGWATCH_REGIONS": "cn-shanghai,cn-beijing",
            "SGWATCH_CHECKS__SEVERITIES": '{"internet-unapproved-port": "medium"}',
        },
    )
    assert loaded.scan.concurrency == 16 and loaded.interval == 60
    assert loaded.regions == ["cn-shanghai", "cn-beijing"]
    assert loaded.baseline == tmp_path / "b"  # relative to the config file
    assert loaded.checks.to_settings().severity("internet-unapproved-port") == "medium"


def test_env_variables_in_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("notifications:\n  - {type: webhook, name: x, url: 'http://127.0.0.1:1/h?t=${HOOK}'}\n")
    monkeypatch.setenv("HOOK", "abc123secret")
    assert config.load(cfg, environ={}).notifications[0]["url"].endswith("t=abc123secret")
    monkeypatch.delenv("HOOK")
    with pytest.raises(InputError, match=r"\$\{HOOK\} is used but the environment variable is not set"):
        config.load(cfg, environ={})


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("interval: -1\n", "interval: Input should be greater than or equal to 1"),
        ("checks: {severities: {no-such-check: high}}\n", "unknown check id(s) no-such-check"),
        ("colour: blue\n", ":1: colour: unknown key; allowed: accounts, baseline, checks"),
        ("endpoint: ftp://x\n", ":1: endpoint: must be an http(s) URL"),
        ("interval: [\n", "YAML syntax error"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(InputError) as info:
        config.load(cfg, environ={})
    assert needle in str(info.value) and str(info.value).startswith(str(cfg))


def test_secrets_are_collected_for_redaction() -> None:
    cfg = config.Config.model_validate(
        {
            "accounts": [
                {"name": "a", "credentials": {"type": "access_key", "id": "LTAIxx", "secret": "s3cr3t-value"}}
            ],
            "notifications": [
                {"type": "dingtalk", "name": "d", "url": "https://x/robot?access_token=tok", "secret": "SECx"}
            ],
        }
    )
    found = config.secrets(cfg)
    assert "s3cr3t-value" in found and "SECx" in found and "https://x/robot?access_token=tok" in found


# -- hostile config files: one line, never a crash (issue 11 items 8, 9, 11) --------------------


def _refused(tmp_path: Path, text: str) -> str:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(InputError) as info:
        config.load(cfg, environ={})
    message = str(info.value)
    assert message.startswith(str(cfg)) and "\n" not in message
    return message


@pytest.mark.parametrize("depth", [100, 3_000, 20_000])
def test_a_deeply_nested_config_is_refused(tmp_path: Path, depth: int) -> None:
    block = "notifications:\n" + "".join(" " * (i + 2) + "-\n" for i in range(min(depth, 500)))
    block += " " * 503 + "- " * max(depth - 500, 0) + "x\n"  # compact nesting: no quadratic indentation
    assert "nested deeper than 64 levels" in _refused(tmp_path, block)


def test_a_config_100000_flow_levels_deep_is_refused(tmp_path: Path) -> None:
    # ruamel crashed with SIGSEGV here (and killed a reloading daemon)
    assert "nested deeper than" in _refused(tmp_path, "regions: " + "[" * 100_000 + "]" * 100_000 + "\n")


def test_a_deep_config_on_reload_is_an_input_error_so_the_daemon_keeps_the_last_good_one(tmp_path: Path) -> None:
    from sgwatch.daemon import RunOptions, load
    from sgwatch.errors import SgwatchError

    cfg = tmp_path / "c.yaml"
    cfg.write_text("notifications:\n" + "- " * 5_000 + "x\n")
    with pytest.raises(SgwatchError, match="nested deeper"):  # Daemon.reload keeps the last good one on this
        load(RunOptions(cfg))


def test_a_5000_digit_integer_in_a_config_is_refused(tmp_path: Path) -> None:
    assert ":2: a number of 5000 digits" in _refused(tmp_path, "log_level: info\ninterval: " + "7" * 5000 + "\n")


def test_an_alias_bomb_is_refused_by_the_alias_rule(tmp_path: Path) -> None:
    # small (10^3 entries): refused for having aliases at all, before anything walks the tree
    bomb = (
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "notifications: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    )
    assert ":1: YAML anchors and aliases (&a / *a) are not allowed" in _refused(tmp_path, bomb)


def test_duplicate_keys_in_a_config_are_refused(tmp_path: Path) -> None:
    assert ":3: duplicate key 'interval' (first at line 1)" in _refused(
        tmp_path, "interval: 60\nlog_level: info\ninterval: 5\n"
    )


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e12", "604801"])
def test_interval_and_jitter_must_be_finite_and_sane(tmp_path: Path, value: str) -> None:
    assert "interval: " in _refused(tmp_path, f"interval: {value}\n")
    assert "jitter: " in _refused(tmp_path, f"jitter: {value}\n")


@pytest.mark.parametrize(
    "text",
    [
        "scan: {requests_per_second: .inf}\n",
        "scan: {deadline_seconds: 1e12}\n",
        "scan: {read_timeout_ms: 1000000000}\n",
    ],
)
def test_scan_tuning_is_bounded(tmp_path: Path, text: str) -> None:
    assert "scan." in _refused(tmp_path, text)


@pytest.mark.parametrize(
    "text", ["checks: {extra_database_ports: [true]}\n", "checks: {rule_limit: true}\n", "interval: true\n"]
)
def test_a_boolean_is_not_a_number(tmp_path: Path, text: str) -> None:
    assert "expected a number, not a boolean" in _refused(tmp_path, text)


def test_numbers_from_the_environment_still_parse(tmp_path: Path) -> None:
    cfg = config.load(None, environ={"SGWATCH_INTERVAL": "60", "SGWATCH_CHECKS__EXTRA_DATABASE_PORTS": "8123,9000"})
    assert cfg.interval == 60 and cfg.checks.extra_database_ports == [8123, 9000]


def test_input_size_limit_is_a_config_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("limits: {max_input_bytes: 100000}\n")
    assert config.load(cfg, environ={}).limits.max_input_bytes == 100_000
    assert "limits.max_input_bytes: Input should be greater than or equal to 4096" in _refused(
        tmp_path, "limits: {max_input_bytes: 10}\n"
    )


def _readme_yaml(containing: str) -> str:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```yaml\n")[1:]]
    (block,) = [b for b in blocks if containing in b]
    return block


def test_the_readme_config_example_loads(tmp_path: Path) -> None:
    cfg = tmp_path / "sgwatch.yaml"
    cfg.write_text(_readme_yaml("notifications: []"))
    loaded = config.load(cfg, environ={})
    assert loaded.limits.max_input_bytes == 8 * 1024 * 1024 and loaded.interval == 300


def test_the_readme_baseline_example_loads(tmp_path: Path) -> None:
    from sgwatch import baseline

    path = tmp_path / "cn-hangzhou.yaml"
    path.write_text(_readme_yaml("security_groups:"))
    assert ("default", "cn-hangzhou", "sg-web") in baseline.load(path).groups


def test_a_deeply_nested_environment_value_is_an_input_error_not_a_recursion_error() -> None:
    with pytest.raises(InputError, match="checks: Input should be a valid dictionary"):
        config.load(None, environ={"SGWATCH_CHECKS": "[" * 100_000})


# -- the environment: an explicit list of variables, a misspelling warned about ------------------
ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo"


def _sgwatch(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it: in the user's own environment, plus ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "sgwatch", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=60,
    )


def test_sgwatch_config_names_the_config_file_as_the_readme_says() -> None:
    result = _sgwatch(
        "report",
        "--baseline",
        DEMO / "baseline",
        "--snapshot",
        DEMO / "snapshot",
        SGWATCH_CONFIG=str(DEMO / "sgwatch.yaml"),
    )
    assert result.returncode == 1, result.stderr  # the demo's drift, not a config error
    assert "error" not in result.stderr


def test_a_secret_for_a_config_reference_does_not_break_commands(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("region: cn-hangzhou\nsecurity_groups: []\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "baseline: b.yaml\nnotifications:\n"
        "  - {type: webhook, name: siem, url: 'https://siem.example/in', secret: '${SGWATCH_WEBHOOK_SECRET}'}\n"
    )
    result = _sgwatch("validate", "--config", cfg, SGWATCH_WEBHOOK_SECRET="s3cr3t-value")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_a_misspelt_variable_is_a_warning_naming_the_key() -> None:
    result = _sgwatch("report", "--baseline", DEMO / "baseline", "--snapshot", DEMO / "snapshot", SGWATCH_INTERVL="5")
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert "SGWATCH_INTERVL" in line and "did you mean SGWATCH_INTERVAL" in line


def test_a_bad_variable_is_named_in_the_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("interval: 60\n")
    with pytest.raises(InputError) as info:
        config.load(cfg, environ={"SGWATCH_INTERVAL": "often", "SGWATCH_SCAN__CONCURRENCY": "0"})
    assert str(info.value).splitlines() == [
        "SGWATCH_SCAN__CONCURRENCY: scan.concurrency: Input should be greater than or equal to 1",
        "SGWATCH_INTERVAL: interval: Input should be a valid number, unable to parse string as a number",
    ]


def test_every_variable_is_a_config_key_or_a_documented_one() -> None:
    names = config.env_names(config.Config)
    assert names["SGWATCH_SCAN__CONCURRENCY"] == ("scan", "concurrency")
    assert names["SGWATCH_LOG_LEVEL"] == ("log_level",)
    assert "SGWATCH_WEBHOOK_SECRET" not in names and "SGWATCH_CONFIG" not in names
    # Every config key can be overridden: the list is derived from the model, not kept by hand.
    assert {p[0] for p in names.values()} == set(config.Config.model_fields)


# -- all errors at once, one line each ---------------------------------------------------------------
def test_a_config_with_three_errors_prints_three_lines(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("interval: 0\nlisten: nowhere\nscna: {concurrency: 4}\n")
    result = _sgwatch("validate", "--config", cfg)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 3 and all(line.startswith(f"sgwatch: error: {cfg}:") for line in lines), lines
    assert lines[0].startswith(f"sgwatch: error: {cfg}:1: interval: ")
    assert lines[1].startswith(f"sgwatch: error: {cfg}:2: listen: ")
    assert lines[2] == f"sgwatch: error: {cfg}:3: scna: unknown key; did you mean 'scan'?"


def test_an_unknown_channel_key_gets_the_nearest_one(tmp_path: Path) -> None:
    from sgwatch.alerting import parse_channels

    with pytest.raises(InputError) as info:
        parse_channels([{"type": "slack", "name": "s", "url": "https://hooks.example/x", "min_severty": "high"}])
    assert str(info.value) == "notifications[0].min_severty: unknown key; did you mean 'min_severity'?"


@pytest.mark.parametrize("url", ["ecs.example.com", "http://ecs example.com", "ftp://ecs.example.com", "http://:80"])
def test_one_url_check_refuses_what_a_request_would_fail_on(url: str) -> None:
    from sgwatch.validation import check_url

    with pytest.raises(ValueError, match="must be an http"):
        check_url(url)


# -- validate refuses what run and report would refuse ------------------------------------------------
def _validate(tmp_path: Path, text: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "b.yaml").write_text("region: cn-hangzhou\nsecurity_groups: []\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"baseline: b.yaml\nstate: {tmp_path / 'state.sqlite'}\n{text}")
    return _sgwatch("validate", "--config", cfg, **env)


def test_validate_accepts_a_good_config_without_creating_the_state(tmp_path: Path) -> None:
    result = _validate(tmp_path, "endpoint: http://127.0.0.1:18080\n")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "state.sqlite").exists()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("accounts: [{name: prod}, {name: prod}]\n", "c.yaml:3: accounts: account name(s) 'prod' used twice"),
        ("endpoint: ecs.example.com\n", "c.yaml:3: endpoint: must be an http(s) URL such as http://127.0.0.1:8080"),
        ("endpoint: 'http://ecs example.com'\n", "c.yaml:3: endpoint: must be an http(s) URL without spaces"),
        ("endpoint: 'http://u:p@ecs.example.com'\n", "endpoint: a user or password in the endpoint URL"),
    ],
)
def test_validate_refuses_what_a_scan_would(tmp_path: Path, text: str, needle: str) -> None:
    result = _validate(tmp_path, text)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("sgwatch: error: ") and needle in line, line


def test_validate_refuses_a_bad_endpoint_variable(tmp_path: Path) -> None:
    result = _validate(tmp_path, "", SGWATCH_ECS_ENDPOINT="127.0.0.1 :8080")
    assert result.returncode == 2
    assert result.stderr.startswith("sgwatch: error: SGWATCH_ECS_ENDPOINT ") and "without spaces" in result.stderr


def test_validate_refuses_a_state_path_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("region: cn-hangzhou\nsecurity_groups: []\n")
    (tmp_path / "a-file").write_text("")
    cfg = tmp_path / "c.yaml"
    # Under a regular file: no folder can be made there, whoever runs the test (root too).
    cfg.write_text("baseline: b.yaml\nstate: a-file/sub/state.sqlite\n")
    result = _sgwatch("validate", "--config", cfg)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line == (
        f"sgwatch: error: {tmp_path}/a-file/sub/state.sqlite: cannot create the state file "
        f"({tmp_path}/a-file is not a directory); check --state"
    )


def test_a_bad_log_level_variable_is_one_line_naming_it() -> None:
    result = _sgwatch("checks", SGWATCH_LOG_LEVEL="loud")
    assert result.returncode == 2
    assert result.stderr == "sgwatch: error: SGWATCH_LOG_LEVEL: 'loud' is not one of debug, info, warning, error\n"
