"""Image references, as Docker and Kubernetes read them, and imagePullPolicy.

`busybox` is `docker.io/library/busybox:latest`; `ghcr.io/o/app:1.2` and
`localhost:5000/app@sha256:...` name their registry. The first part of a name
is a registry when it has a `.` or a `:`, or is `localhost`; otherwise the
image is on Docker Hub, where a one-part name is under `library/`. A
reference with a digest means that content and nothing else: its tag, if it
has one, is only a label.
"""

from __future__ import annotations

import re
from enum import StrEnum

from podvisor.supervisor.errors import ImageReferenceError
from podvisor.supervisor.frozen import frozen

DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?\Z"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z")
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}\Z")
_MAX_NAME = 255


def check_digest(digest: str, what: str = "digest") -> str:
    """*digest* if it is `sha256:` and 64 lower-case hex digits; ImageReferenceError if not."""
    if not _SHA256.match(digest):
        raise ImageReferenceError(
            f"{what} {digest!r} is not a sha256 digest (sha256: and 64 lower-case hex digits)"
        )
    return digest


@frozen
class Reference:
    """A parsed image reference: registry, repository, and a tag or a digest or both."""

    domain: str  # docker.io, ghcr.io, 127.0.0.1:5000
    path: str  # library/busybox
    tag: str | None = None  # None when only a digest was given
    digest: str | None = None

    @property
    def repository(self) -> str:
        """`domain/path`: the name without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def by_tag(self) -> str | None:
        """`repository:tag`, or None without a tag."""
        return f"{self.repository}:{self.tag}" if self.tag else None

    def with_digest(self, digest: str) -> str:
        """`repository@digest`: how this repository names *digest*."""
        return f"{self.repository}@{digest}"

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def pinned(self) -> str:
        """What to fetch: `repository@digest` when pinned, else `repository:tag`."""
        return self.with_digest(self.digest) if self.digest else str(self)


def parse(text: str) -> Reference:
    """*text* as a full reference; ImageReferenceError saying what is wrong."""
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        check_digest(digest, f"image {text!r}: the")
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ImageReferenceError(
                f"image {text!r}: the tag {tag!r} may hold letters, digits, _ . and - "
                "(at most 128, not starting with . or -)"
            )
    domain, path = _split_domain(text, rest)
    if not tag and not digest:
        tag = "latest"
    return Reference(domain, path, tag, digest)


def _split_domain(text: str, name: str) -> tuple[str, str]:
    first, _, remainder = name.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, remainder
        if not _DOMAIN.match(domain):
            raise ImageReferenceError(f"image {text!r}: {domain!r} is not a registry's host[:port]")
        if domain in _HUB_ALIASES:
            domain = DOCKER_HUB
    else:
        domain, path = DOCKER_HUB, name
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    components = path.split("/")
    bad = next((c for c in components if not _COMPONENT.match(c)), None)
    if not path or bad is not None:
        shown = f"{bad!r} " if bad else ""
        raise ImageReferenceError(
            f"image {text!r}: the name's part {shown}must be lower-case letters and digits, "
            "separated by . _ __ or -"
        )
    if len(domain) + 1 + len(path) > _MAX_NAME:
        raise ImageReferenceError(f"image {text!r}: the name is longer than {_MAX_NAME} characters")
    return domain, path


def familiar(name: str) -> str:
    """*name* as people write it: `busybox:1.36` for `docker.io/library/busybox:1.36`."""
    for prefix in (f"{DOCKER_HUB}/library/", f"{DOCKER_HUB}/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


class PullPolicy(StrEnum):
    """imagePullPolicy: when the image is fetched from its registry."""

    ALWAYS = "Always"  # resolve the tag at the registry every time; fetch what is new
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"  # the image must be in the store already

    @classmethod
    def default_for(cls, reference: Reference) -> PullPolicy:
        """Kubernetes' default: Always for `:latest` or no tag at all, else IfNotPresent."""
        return cls.ALWAYS if reference.tag == "latest" else cls.IF_NOT_PRESENT
