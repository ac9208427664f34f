"""The distribution: one `gardien` namespace in the wheel, console script, Python 3.11+."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ops1_wheel_holds_only_the_gardien_namespace(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("gardien-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()

    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"gardien", next(t for t in top_level if t.endswith(".dist-info"))}
    for module in (
        "gardien/models/users.py",
        "gardien/resolvers/authz.py",
        "gardien/schema/relay.py",
        "gardien/models/migrations/0001_initial.py",
        "gardien/data/common-passwords.txt",
        "gardien/console/__init__.py",
        "gardien/mail/templates/layout.html",
        "gardien/mail/templates/it/invitation_join.txt",
        "gardien/mail/templates/de/sign_up_confirmation.html",
        "gardien/sms/templates/it/sign_in_code.txt",
    ):
        assert module in names
    entry_points = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith("entry_points.txt")))
        .decode()
    )
    assert "gardien = gardien.cli:main" in entry_points
