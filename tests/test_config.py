"""Config: file, environment overrides, ${VAR}, one-line errors; and the pure core's imports."""

from __future__ import annotations

import ast
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
        ("colour: blue\n", "colour: Extra inputs are not permitted"),
        ("endpoint: ftp://x\n", "is not an http(s) URL"),
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
