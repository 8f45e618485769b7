"""Baselines spell a rule's every-port ranges as the team wrote them: a recapture adds no noise."""

from __future__ import annotations

from pathlib import Path

from sgwatch import baseline
from sgwatch.core.model import Snapshot

TEXT = """account: default
region: cn-hangzhou
security_groups:
  - id: sg-web
    vpc_id: vpc-1
    accepted_exposures:
      - {protocol: tcp, reason: the whole web tier, owner: team-web}
    ingress:
      - {protocol: tcp, peer: 10.0.0.0/8}
"""


def test_an_all_ports_exception_is_recaptured_without_ports(tmp_path: Path) -> None:
    (tmp_path / "default").mkdir()
    (tmp_path / "default" / "cn-hangzhou.yaml").write_text(TEXT)
    loaded = baseline.load(tmp_path)
    (group,) = loaded.groups.values()
    snap = Snapshot(groups={group.key: group})
    (written,) = baseline.capture(snap, tmp_path)
    text = written.read_text()
    assert "- {protocol: tcp, reason: the whole web tier, owner: team-web}" in text
    assert baseline.load(tmp_path).groups == loaded.groups
