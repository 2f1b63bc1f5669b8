"""bandit, the offline security lint, over the project's code (config: [tool.bandit] in pyproject.toml).

A finding passes only when its check is skipped in the config (with the reason there) or when its line
carries the ruff marker of the same check with a reason (``# noqa: S608 - identifiers from model metadata``):
ruff's flake8-bandit rules S<nnn> are bandit's B<nnn>, so one reviewed marker serves both tools.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from django.conf import settings

BASE_DIR = Path(settings.BASE_DIR)
PACKAGES = ["bnpl", "merchants", "consumers", "scoring"]


def _bandit(*targets: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "bandit", "-c", "pyproject.toml", "-r", *targets, "-f", "json", "-q"],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode in (0, 1), result.stderr  # 1 = findings; anything else = bandit itself failed
    return json.loads(result.stdout)


def _reviewed(finding: dict) -> bool:
    code = "S" + finding["test_id"][1:]
    lines = Path(BASE_DIR / finding["filename"]).read_text(encoding="utf-8").splitlines()
    span = finding.get("line_range") or [finding["line_number"]]
    for number in range(min(span), max(span) + 1):
        marker = re.search(r"#\s*noqa:([^#]*)", lines[number - 1])
        if marker and re.search(rf"\b{code}\b", marker.group(1)):
            return True
    return False


def test_bandit_finds_nothing_unreviewed_in_the_project():
    report = _bandit(*PACKAGES)
    assert not report["errors"], report["errors"]
    scanned = [name for name in report["metrics"] if name.endswith(".py")]
    assert len(scanned) > 50
    assert not any("/migrations/" in name for name in scanned)
    unreviewed = [
        f"{f['filename']}:{f['line_number']} {f['test_id']} {f['issue_text']}"
        for f in report["results"]
        if not _reviewed(f)
    ]
    assert not unreviewed, "\n".join(unreviewed)


def test_bandit_reports_an_unreviewed_finding(tmp_path):
    """The check is live: a shell=True call without a marker is reported (and would fail the test above)."""
    sample = tmp_path / "probe.py"
    sample.write_text("import subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n")
    findings = [f for f in _bandit(str(sample))["results"] if f["test_id"] == "B602"]
    assert findings and not any(_reviewed(f) for f in findings)
