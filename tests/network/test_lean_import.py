"""pyroute2 without its package's __init__: what a pod on the bridge imports.

Each check runs in a fresh interpreter, as `podvisor run` starts: this
process may have imported pyroute2 whole already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: Modules only the package's __init__ brings in; podvisor needs none of them.
WHOLE_PACKAGE_ONLY = (
    "pyroute2.ndb.main",
    "pyroute2.conntrack",
    "pyroute2.ipset",
    "pyroute2.iwutil",
)


def run_fresh(code: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_netlink_works_without_the_package_init_which_still_runs_when_asked() -> None:
    seen = run_fresh(
        """
        import json, sys
        from podvisor.supervisor.network import links

        def loaded():
            return sorted(m for m in sys.modules if m.startswith("pyroute2."))

        seen = {"links": links.link_names(), "lo up": links.is_up("lo")}
        seen["after netlink"] = loaded()
        from pyroute2 import config  # a submodule: imported, the package left lean
        seen["after a submodule"] = loaded()
        import pyroute2
        from pyroute2 import NDB, IPRoute, NetlinkError
        seen["after NDB"] = loaded()
        seen["same IPRoute"] = IPRoute is links.pyroute2_module("iproute.linux").IPRoute
        seen["same NetlinkError"] = (
            NetlinkError is links.pyroute2_module("netlink.exceptions").NetlinkError
        )
        seen["version"] = pyroute2.__version__
        try:
            pyroute2.no_such_name
        except AttributeError as e:
            seen["missing"] = str(e)
        print(json.dumps(seen))
        """
    )
    assert "lo" in seen["links"]
    assert seen["lo up"] is True
    for name in WHOLE_PACKAGE_ONLY:
        assert name not in seen["after netlink"]
        assert name not in seen["after a submodule"]
        assert name in seen["after NDB"]
    assert "pyroute2.config" in seen["after a submodule"]
    assert seen["same IPRoute"] is True
    assert seen["same NetlinkError"] is True
    assert seen["version"] == version("pyroute2")
    assert seen["missing"] == "module 'pyroute2' has no attribute 'no_such_name'"


def test_a_pyroute2_imported_whole_already_is_used_as_it_is() -> None:
    seen = run_fresh(
        """
        import json, sys
        import pyroute2
        from podvisor.supervisor.network import links

        seen = {"links": links.link_names()}
        seen["same module"] = sys.modules["pyroute2"] is pyroute2
        seen["same IPRoute"] = pyroute2.IPRoute is links.pyroute2_module("iproute.linux").IPRoute
        print(json.dumps(seen))
        """
    )
    assert "lo" in seen["links"]
    assert seen["same module"] is True
    assert seen["same IPRoute"] is True
