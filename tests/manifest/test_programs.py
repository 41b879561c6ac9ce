"""`podvisor check` looks for each container's program, as execvp(3) will."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from podvisor.supervisor import manifest
from podvisor.supervisor.manifest.programs import _in_layers, program_warnings


def _pod(*commands: str) -> str:
    containers = "\n".join(
        f"    - {{name: c{i}, command: [{command!r}]}}" for i, command in enumerate(commands)
    )
    return f"apiVersion: v1\nkind: Pod\nmetadata: {{name: progs}}\nspec:\n  containers:\n{containers}\n"


def test_a_program_not_on_path_is_a_warning_naming_it() -> None:
    loaded = manifest.load("pod.yaml", _pod("sh", "/bin/sh", "no-such-program-here", "/nope/x"))
    assert program_warnings(loaded.pod) == [
        (
            "container c2: its program 'no-such-program-here' is not found in any directory of "
            "PATH on this host; it would fail to start with ContainerCannotRun (exit 127)"
        ),
        (
            "container c3: its program '/nope/x' is not found at that path on this host; it "
            "would fail to start with ContainerCannotRun (exit 127)"
        ),
    ]


def test_check_prints_the_warning_and_still_passes(tmp_path: Path) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(_pod("no-such-program-here"))
    done = subprocess.run(
        [str(Path(sys.executable).with_name("podvisor")), "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "its program 'no-such-program-here' is not found" in done.stdout


def test_a_path_in_an_images_layers_follows_links_inside_and_whiteouts(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "usr/bin").mkdir(parents=True)
    (upper / "usr/bin").mkdir(parents=True)
    for name in ("sh", "gone", "plain"):
        program = lower / "usr/bin" / name
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755 if name != "plain" else 0o644)
    (lower / "bin").symlink_to("usr/bin")  # a merged /usr
    (lower / "escape").symlink_to("/usr/bin")  # absolute: the image's /usr/bin, not the host's
    os.mknod(upper / "usr/bin/gone", 0o600 | 0o020000, os.makedev(0, 0))  # a whiteout
    layers = (str(upper), str(lower))  # top first

    assert _in_layers("/bin/sh", layers)
    assert _in_layers("/escape/sh", layers)
    assert not _in_layers("/bin/gone", layers)  # deleted by the upper layer
    assert not _in_layers("/usr/bin/plain", layers)  # not executable
    assert not _in_layers("/usr/bin/python3", layers)  # the host has it, the image does not
