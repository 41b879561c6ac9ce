"""Pulling from an OCI distribution registry, through skopeo.

Why skopeo. The transport is the containers project's: skopeo (from Debian)
speaks the distribution protocol with its token auth (the challenge's realm
and scope, Basic credentials traded for a bearer token), follows blob
redirects to a CDN without leaking credentials, honours
/etc/containers/registries.conf (mirrors, insecure registries), credential
helpers and signature policy, retries, and checks every blob's digest.
podvisor keeps what makes an image podvisor's: which manifest of an index
fits this machine (`oci.choose`), which credentials apply, and the checks of
every digest again as the blobs enter the store.

A pull is two steps: `skopeo inspect --raw` reads the reference's manifest
(or index) and podvisor picks this machine's manifest by its digest; then
`skopeo copy` of exactly that digest into a `dir:` download, which keeps
the registry's manifest byte for byte (so its digest stays the registry's),
and which the store reads like any other source. A tag is resolved once, so
a tag moved between the two steps cannot mix two images.

Credentials: an imagePullSecret of the pod first, then the first auth file
with an entry for the registry: $REGISTRY_AUTH_FILE,
$XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json,
~/.docker/config.json. The entry chosen is handed to skopeo in a file of its
own (mode 0600, in the store's temporary directory, removed after the pull),
never on a command line. A registry with no inline entry (a credential
helper, `credsStore`) is left to skopeo's own lookup.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

from podvisor.supervisor.errors import ImageFormatError, PullError
from podvisor.supervisor.frozen import frozen
from podvisor.supervisor.images import oci
from podvisor.supervisor.images.reference import DOCKER_HUB, Reference

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from podvisor.supervisor.images.oci import Platform

INSECURE_ENV = "PODVISOR_INSECURE_REGISTRIES"
_HUB_KEYS = frozenset({"index.docker.io", "registry-1.docker.io", DOCKER_HUB})


# --- Credentials --------------------------------------------------------------------


@frozen
class Credential:
    """A user name and password (or token) for a registry, and where it was found."""

    username: str
    password: str
    source: str = ""


#: A docker config's `auths`: registry key (host, host/path, *.host) -> entry.
AuthEntries = dict[str, dict[str, Any]]


def auths_of(config: Mapping[str, Any], where: str) -> AuthEntries:
    """The `auths` of a docker config.json (or the bare map of a .dockercfg)."""
    found = config.get("auths", config if "auths" not in config else None)
    if not isinstance(found, dict) or not all(isinstance(v, dict) for v in found.values()):
        raise PullError(f"{where}: 'auths' is not a map of registry entries")
    return found


def auth_files() -> list[str]:
    """The auth files read, in order, as the containers tools and Docker read them."""
    home = os.path.expanduser("~")
    files = [os.environ.get("REGISTRY_AUTH_FILE", "")]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        files.append(os.path.join(runtime, "containers/auth.json"))
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    files.append(os.path.join(config_home, "containers/auth.json"))
    docker = os.environ.get("DOCKER_CONFIG") or os.path.join(home, ".docker")
    files.append(os.path.join(docker, "config.json"))
    return [f for f in files if f]


def _key_matches(key: str, reference: Reference) -> int:
    """How well an auths key fits *reference*: 0 not at all, longer is better."""
    key = key.removeprefix("https://").removeprefix("http://").rstrip("/")
    key = key.removesuffix("/v1").removesuffix("/v2")
    host, _, path = key.partition("/")
    if host in _HUB_KEYS:
        host = DOCKER_HUB
    if "*" in host:
        if host.count(".") != reference.domain.count(".") or not fnmatch.fnmatchcase(
            reference.domain, host
        ):
            return 0
    elif host != reference.domain:
        return 0
    if path and not (reference.path == path or reference.path.startswith(path + "/")):
        return 0
    return len(key) + (1000 if "*" not in host else 0)


def _credential(entry: dict[str, Any], where: str) -> Credential | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise PullError(f"{where}: 'auth' is not base64 of user:password") from None
        if sep:
            return Credential(user, password, where)
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return Credential(name, secret, where)
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return Credential("<token>", token, where)
    return None


def find_credential(
    reference: Reference, secrets: Iterable[tuple[str, AuthEntries]] = ()
) -> Credential | None:
    """The credential for *reference*: from *secrets* (name, auths) first, then the files."""
    for name, auths in secrets:
        found = _best(auths, reference, f"imagePullSecret {name}")
        if found is not None:
            return found
    for path in auth_files():
        try:
            with open(path, encoding="utf-8") as file:
                config = json.load(file)
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as error:
            raise PullError(f"cannot read the registry auth file {path}: {error}") from None
        if isinstance(config, dict) and isinstance(config.get("auths", {}), dict):
            found = _best(auths_of(config, path), reference, path)
            if found is not None:
                return found
    return None


def _best(auths: AuthEntries, reference: Reference, where: str) -> Credential | None:
    scored = sorted(((_key_matches(k, reference), k) for k in auths), reverse=True)
    for score, key in scored:
        if score:
            found = _credential(auths[key], f"{where} ({key})")
            if found is not None:
                return found
    return None


# --- skopeo -----------------------------------------------------------------------------


@frozen
class Remote:
    """What a registry says a reference is, resolved for this machine."""

    manifest_digest: str  # the image manifest for this platform
    digests: tuple[str, ...]  # repository@digest: the index's and the manifest's


class Registry:
    """Reads manifests and downloads images with skopeo, for one pull."""

    def __init__(
        self,
        reference: Reference,
        workdir: str,
        credential: Credential | None = None,
        insecure: Iterable[str] = (),
    ) -> None:
        self.reference = reference
        self._workdir = workdir
        self._credential = credential
        insecure = {*insecure, *os.environ.get(INSECURE_ENV, "").replace(",", " ").split()}
        self._insecure = reference.domain in insecure
        self._skopeo = shutil.which("skopeo")
        if self._skopeo is None:
            raise PullError(
                "pulling needs skopeo, which is not installed: apt-get install skopeo "
                "(make setup installs it), or load the image with podvisor image load"
            )

    def resolve(self, platform: Platform) -> Remote:
        """The manifest digest of the reference for *platform*."""
        ref = self.reference
        raw = self._inspect(ref.pinned)
        top = "sha256:" + hashlib.sha256(raw).hexdigest()
        if ref.digest and top != ref.digest:
            raise PullError(f"{ref}: the registry sent {top} for {ref.digest}")
        digests = [ref.with_digest(top)]
        digest, data = top, raw
        for _ in range(4):
            where = f"{ref.repository}@{digest}"
            doc = oci.document(data, where)
            if oci.media_type(doc, where) not in oci.INDEXES:
                return Remote(digest, tuple(dict.fromkeys([*digests, ref.with_digest(digest)])))
            digest = oci.choose(oci.index_entries(doc, where), platform, where).digest
            data = self._inspect(ref.with_digest(digest))
            if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                raise PullError(f"{ref}: the registry sent another manifest for {digest}")
        raise ImageFormatError(f"{ref}: indexes nested too deep")

    def download(self, digest: str, into: str) -> None:
        """`skopeo copy` the image manifest *digest* into the directory *into*."""
        source = f"docker://{self.reference.with_digest(digest)}"
        self._skopeo_run(["copy", "--quiet", *self._copy_options(), source, f"dir:{into}"])

    def _inspect(self, pinned: str) -> bytes:
        tls = ["--tls-verify=false"] if self._insecure else []
        return self._skopeo_run(["inspect", "--raw", *tls, *self._auth(), f"docker://{pinned}"])

    def _copy_options(self) -> list[str]:
        options = ["--src-tls-verify=false"] if self._insecure else []
        auth = self._auth()
        if auth:
            options += ["--src-authfile", auth[1]]
        if not any(os.path.exists(p) for p in _policies()):
            options.append("--insecure-policy")  # no policy at all: skopeo would refuse
        return options

    def _auth(self) -> list[str]:
        if self._credential is None:
            return []
        path = os.path.join(self._workdir, "auth.json")
        if not os.path.exists(path):
            c = self._credential
            token = base64.b64encode(f"{c.username}:{c.password}".encode()).decode()
            entry: dict[str, str] = {"auth": token}
            if c.username == "<token>":
                entry = {"identitytoken": c.password}
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump({"auths": {self.reference.domain: entry}}, file)
        return ["--authfile", path]

    def _skopeo_run(self, args: list[str]) -> bytes:
        assert self._skopeo is not None
        try:
            done = subprocess.run(
                [self._skopeo, args[0], "--retry-times", "2", *args[1:]],
                capture_output=True,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except OSError as error:
            raise PullError(f"cannot run skopeo: {error}") from None
        if done.returncode != 0:
            raise PullError(_explain(self.reference, done.stderr.decode(errors="replace")))
        return done.stdout


def _policies() -> list[str]:
    home = os.path.expanduser("~")
    return [os.path.join(home, ".config/containers/policy.json"), "/etc/containers/policy.json"]


def _explain(reference: Reference, stderr: str) -> str:
    """skopeo's failure, with what to do about it."""
    said = stderr.strip().splitlines()[-1] if stderr.strip() else "skopeo failed"
    said = said.removeprefix('time="').split('msg="', 1)[-1].rstrip('"')
    lowered = said.lower()
    if "unauthorized" in lowered or "authentication required" in lowered or "denied" in lowered:
        hint = (
            "log in to the registry (skopeo login, docker login, or an entry in "
            "$REGISTRY_AUTH_FILE or ~/.docker/config.json), or give the pod an imagePullSecret"
        )
    elif "manifest unknown" in lowered or "not found" in lowered:
        hint = "check the name and the tag: the registry has no such image"
    elif "http response to https client" in lowered or "certificate" in lowered:
        hint = (
            f"for a registry without TLS, name it in ${INSECURE_ENV} ({reference.domain}) or "
            "in /etc/containers/registries.conf with insecure = true"
        )
    else:
        hint = "check that the registry is reachable from this machine"
    return f"cannot pull {reference}: {said}; {hint}"
