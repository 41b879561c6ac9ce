"""What a container's environment holds beside its manifest's: HOME and TERM, as runtimes set them.

HOME is runc's: the container's env wins, then the image's Env, else the home
of the user the program runs as, in the image's /etc/passwd (on the host's
files, the host's), else /. TERM is containerd's: xterm for a container with a
terminal, unless its env or its image's Env says otherwise.
"""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest

from podvisor.supervisor.pod import image_config
from tests.rootfs.conftest import LoadImage
from tests.security.conftest import run_pod

#: Each container prints its HOME and TERM on one line.
SHOW = '[sh, -c, "echo \\"HOME=$$HOME TERM=$$TERM\\""]'


def _container(name: str, image: str, extra: str = "") -> str:
    return f"""
          - name: {name}
            image: {image}
            imagePullPolicy: Never
            command: {SHOW}
            {extra}"""


def test_home_is_the_users_in_the_images_passwd_unless_an_env_says(
    run_dir: Path, load_image: LoadImage
) -> None:
    plain = load_image("test/env:1", {"Env": ["PATH=/bin"]})
    named = load_image("test/env-app:1", {"Env": ["PATH=/bin"], "User": "app"})
    homed = load_image("test/env-home:1", {"Env": ["PATH=/bin", "HOME=/from-image"]})
    containers = "".join(
        (
            _container("root", plain),
            _container("app", plain, "securityContext: {runAsUser: 1000}"),
            _container("unknown", plain, "securityContext: {runAsUser: 4242}"),
            _container("named", named),
            _container("image-env", homed, "securityContext: {runAsUser: 1000}"),
            _container("own-env", homed, "env: [{name: HOME, value: /mine}]"),
        )
    )
    ran = run_pod(run_dir, "img-home", "containers:" + containers)
    assert ran.status == 0, ran.stderr
    homes = {name: ran.of(name) for name in ran.lines}
    assert homes == {
        "root": ["HOME=/root TERM="],
        "app": ["HOME=/home/app TERM="],
        "unknown": ["HOME=/ TERM="],
        "named": ["HOME=/home/app TERM="],
        "image-env": ["HOME=/from-image TERM="],
        "own-env": ["HOME=/mine TERM="],
    }


def test_home_on_the_hosts_files_is_the_hosts_passwd(run_dir: Path) -> None:
    known = next((e for e in pwd.getpwall() if e.pw_uid not in (0, 4242) and e.pw_dir), None)
    if known is None:
        pytest.skip("this machine's passwd has no user but root")
    with pytest.raises(KeyError):
        pwd.getpwuid(4242)
    containers = "".join(
        (
            _container("root", "host"),
            _container("known", "host", f"securityContext: {{runAsUser: {known.pw_uid}}}"),
            _container("unknown", "host", "securityContext: {runAsUser: 4242}"),
        )
    )
    ran = run_pod(
        run_dir,
        "host-home",
        "containers:" + containers,
        annotations={"podvisor.io/rootfs": "host"},
    )
    assert ran.status == 0, ran.stderr
    assert {name: ran.of(name) for name in ran.lines} == {
        "root": [f"HOME={pwd.getpwuid(0).pw_dir} TERM="],
        "known": [f"HOME={known.pw_dir} TERM="],
        "unknown": ["HOME=/ TERM="],
    }


def test_a_terminal_brings_term_xterm_unless_an_env_says(
    run_dir: Path, load_image: LoadImage
) -> None:
    plain = load_image("test/env:1", {"Env": ["PATH=/bin"]})
    screen = load_image("test/env-term:1", {"Env": ["PATH=/bin", "TERM=screen"]})
    containers = "".join(
        (
            _container("tty", plain, "tty: true"),
            _container("image-env", screen, "tty: true"),
            _container(
                "own-env", screen, "tty: true\n            env: [{name: TERM, value: vt100}]"
            ),
            _container("no-tty", plain),
        )
    )
    ran = run_pod(run_dir, "img-term", "containers:" + containers)
    assert ran.status == 0, ran.stderr
    assert {name: ran.of(name) for name in ran.lines} == {
        "tty": ["HOME=/root TERM=xterm"],
        "image-env": ["HOME=/root TERM=screen"],
        "own-env": ["HOME=/root TERM=vt100"],
        "no-tty": ["HOME=/root TERM="],
    }


def test_home_reads_the_top_layers_passwd_and_never_a_link_out_of_it(tmp_path: Path) -> None:
    top, lower = tmp_path / "top", tmp_path / "lower"
    for layer in (top, lower):
        (layer / "etc").mkdir(parents=True)
    (lower / "etc" / "passwd").write_text("www:x:33:33::/var/www:/bin/sh\n")
    assert image_config.home(33, [str(top), str(lower)]) == "/var/www"
    # The top layer's file is the one the container sees: the first entry of the uid wins.
    (top / "etc" / "passwd").write_text("a:x:33:33::/srv/a:/bin/sh\nb:x:33:33::/srv/b:/bin/sh\n")
    assert image_config.home(33, [str(top), str(lower)]) == "/srv/a"
    assert image_config.home(34, [str(top), str(lower)]) == "/"
    # A link that leads out of the layer would name this machine's files.
    host = tmp_path / "host-passwd"
    host.write_text("host:x:33:33::/host-home:/bin/sh\n")
    (top / "etc" / "passwd").unlink()
    (top / "etc" / "passwd").symlink_to(host)
    assert image_config.home(33, [str(top), str(lower)]) == "/"


def test_home_on_the_hosts_files_reads_the_passwd_file_not_the_name_services(
    tmp_path: Path,
) -> None:
    # runc reads the root's passwd file itself: a user the file lacks gets /,
    # whatever a directory service would say; the uid's first entry wins.
    passwd = tmp_path / "passwd"
    passwd.write_text(
        "#old:x:4242:4242::/srv/old:/bin/sh\n"  # a comment
        "a:x:4242:4242::/srv/a:/bin/sh\nb:x:4242:4242::/srv/b:/bin/sh\n"
        "zero:x:01000:1000::/srv/zero:/bin/sh\n"  # a uid with a leading zero is still 1000
        "nohome:x:1001:1001:::/bin/sh\n"
        "+::::::\n"
    )
    assert image_config.host_home(4242, str(passwd)) == "/srv/a"
    assert image_config.host_home(1000, str(passwd)) == "/srv/zero"
    assert image_config.host_home(1001, str(passwd)) == "/"
    assert image_config.host_home(0, str(passwd)) == "/"
    assert image_config.host_home(4242, str(tmp_path / "missing")) == "/"
