"""PersistentVolumeClaims on one machine: a folder per claim, kept until `podvisor volume rm`.

How this works
--------------
A claim NAME of namespace NS is the folder ``<root>/NS/NAME``, where root is
``$PODVISOR_VOLUMES``, else /var/lib/podvisor/volumes (beside the image
store). The first pod that uses the claim makes it, mode 0777 as a
provisioner's local folder is, so a container of any user writes it; root
and the namespace folders are root's alone (0700), so that no user of the
host reaches a claim's files through them. The folder outlives the pod and
every pod that names the claim finds it again, data and all.

A pod holds a flock(2) on each claim's folder while it runs: a shared one,
so that pods share a claim as they share one on a node (ReadWriteOnce,
ReadOnlyMany and ReadWriteMany all allow it), or an exclusive one for a
claim whose accessModes are ReadWriteOncePod, which Kubernetes gives one pod
at a time. A lock that is taken is refused at once, never waited for: a pod
whose claim another pod holds does not start. `remove` takes the lock
exclusively, likewise without waiting, so it refuses a claim that a running
pod holds. The kernel lets go of the lock however the pod's supervisor ends.

A pod with an fsGroup gets the claim as the kubelet's volume ownership
management gives it (`give_to_group`): the folder and every file in it that
group's, readable and writable by it, directories setgid so that what is made
in them is that group's too; with fsGroupChangePolicy OnRootMismatch the walk
is skipped when the folder itself is already so. Files a container made are
reached from their directory's descriptor and never through a link, so no
file outside the folder changes, whatever links a container left in it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from podvisor.supervisor.flocks import flock_held
from podvisor.supervisor.manifest import names

#: Where the claims are, unless $PODVISOR_VOLUMES says.
DEFAULT_ROOT = "/var/lib/podvisor/volumes"
ROOT_ENV = "PODVISOR_VOLUMES"


class ClaimError(Exception):
    """Raised when a claim cannot be found, made or removed; the message says why and what to do."""


def default_root() -> str:
    return os.environ.get(ROOT_ENV) or DEFAULT_ROOT


@dataclass(frozen=True)
class Claim:
    """A claim's folder, and whether a running pod holds it."""

    namespace: str
    name: str
    path: str
    bytes_used: int
    in_use: bool


class ClaimStore:
    """The claims' folders under *root* (default: `default_root`)."""

    def __init__(self, root: str | None = None) -> None:
        self.root = root or default_root()

    def path_of(self, namespace: str, name: str) -> str:
        for word in (namespace, name):
            problem = names.dns1123_subdomain(word)
            if problem:
                raise ClaimError(f"{word!r} is no claim's name: {problem}")
        return os.path.join(self.root, namespace, name)

    def hold(self, namespace: str, name: str, *, one_pod: bool = False) -> tuple[str, int]:
        """The claim's folder, made if new, and a descriptor holding it (close it to let go).

        *one_pod*: the claim is ReadWriteOncePod, held by this pod alone.
        """
        path = self.path_of(namespace, name)
        os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        os.chmod(self.root, 0o700)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)
            os.chmod(path, 0o777)  # noqa: S103 (a container of any user writes its claim)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if one_pod else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if one_pod:
                raise ClaimError(
                    f"claim {namespace}/{name} is ReadWriteOncePod and a running pod uses it: "
                    "stop that pod first (`podvisor volume ls` shows the claims in use)"
                ) from None
            raise ClaimError(
                f"claim {namespace}/{name} is held by a running pod alone (its accessModes "
                "are ReadWriteOncePod), or is being removed: stop that pod first "
                "(`podvisor volume ls` shows the claims in use)"
            ) from None
        # `remove` may have taken the folder away between the open and the lock.
        if not _still_there(fd, path):
            os.close(fd)
            raise ClaimError(
                f"claim {namespace}/{name} was removed while the pod started: start it again"
            )
        return path, fd

    def claims(self) -> list[Claim]:
        """Every claim's folder, by namespace and name."""
        found = []
        for namespace in _names(self.root):
            for name in _names(os.path.join(self.root, namespace)):
                path = os.path.join(self.root, namespace, name)
                found.append(Claim(namespace, name, path, bytes_used(path), _held(path)))
        return found

    def remove(self, namespace: str, name: str) -> str:
        """Remove a claim's folder and its data; ClaimError if missing or a running pod holds it."""
        path = self.path_of(namespace, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ClaimError(
                f"no claim {namespace}/{name} in {self.root} (`podvisor volume ls` lists them)"
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ClaimError(
                    f"claim {namespace}/{name} is in use by a running pod: stop the pod first "
                    "(`podvisor ps` lists the pods)"
                ) from None
            from podvisor.supervisor.trees import remove_tree

            remove_tree(path)
        finally:
            os.close(fd)
        return path


#: What the kubelet adds to the mode of each file it gives to the fsGroup: read and write
#: for the owner and the group (read only, for a read-only mount); directories also get
#: search and setgid.
_READ_WRITE, _READ_ONLY, _SEARCH = 0o660, 0o440, 0o110


def give_to_group(
    fd: int, group: int, *, read_only: bool = False, on_root_mismatch: bool = False
) -> None:
    """Give the folder open on *fd*, and all in it, to *group*, as the kubelet does for fsGroup.

    *on_root_mismatch*: fsGroupChangePolicy OnRootMismatch, nothing is changed when
    the folder is the group's already, setgid, with the group's bits.
    """
    wanted = _READ_ONLY if read_only else _READ_WRITE
    if on_root_mismatch and _root_matches(os.fstat(fd), group, wanted):
        return
    stack: list[tuple[int, Iterator[str]]] = []
    try:
        top = os.dup(fd)
        stack.append((top, _give_directory(top, group, wanted)))
        while stack:
            directory, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(stack.pop()[0])
                continue
            inner = _give_entry(directory, name, group, wanted)
            if inner is not None:
                stack.append((inner, _give_directory(inner, group, wanted)))
    finally:
        for directory, _ in stack:
            os.close(directory)


def _root_matches(st: os.stat_result, group: int, wanted: int) -> bool:
    bits = wanted | _SEARCH
    return st.st_gid == group and st.st_mode & bits == bits and bool(st.st_mode & stat.S_ISGID)


def _give_directory(fd: int, group: int, wanted: int) -> Iterator[str]:
    """Give the directory open on *fd* to *group*; the names in it, to be given next."""
    os.fchown(fd, -1, group)
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    os.fchmod(fd, mode | wanted | _SEARCH | stat.S_ISGID)
    return iter([entry.name for entry in os.scandir(fd)])


def _give_entry(directory: int, name: str, group: int, wanted: int) -> int | None:
    """Give *name* (in *directory*) to *group*; a descriptor of it if it is a directory.

    Each step acts on the name itself, never through a link: a container that
    swaps a file for a link meanwhile gets the link changed (or nothing), never
    what it points to.
    """
    try:
        st = os.stat(name, dir_fd=directory, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(name, flags, dir_fd=directory)
        os.chown(name, -1, group, dir_fd=directory, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):  # a link's own mode means nothing
            mode = stat.S_IMODE(st.st_mode) | wanted
            os.chmod(name, mode, dir_fd=directory, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        pass  # gone, or no longer a directory, while the folder was walked
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EOPNOTSUPP):
            raise  # ELOOP, EOPNOTSUPP: it became a link meanwhile, left as it is
    return None


def _still_there(fd: int, path: str) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
        return False


def _names(directory: str) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(directory) if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


def _held(path: str) -> bool:
    try:
        return flock_held(path, missing=False, flags=os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:  # a link or a file where a claim's folder should be: nobody runs on it
        return False


def bytes_used(top: str) -> int:
    """What the folder's files take on disk (allocated blocks, hard links once), as du counts,
    the folder itself aside; what goes while it is walked is not counted."""
    used, stack = 0, [top]
    seen: set[tuple[int, int]] = set()
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_nlink > 1:
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                used += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return used
