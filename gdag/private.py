"""The private store: gdag's refs and objects in a repository of their own inside `.git`.

`.git/gdag/store.git` is a bare repository that may borrow the user's objects
through `objects/info/alternates`, never the other way round: gdag writes every
object it needs into its own store, so the user's `git gc`, clones,
`git branch -a` and `git for-each-ref` neither see nor harm gdag's state.
"""

from __future__ import annotations

import os
from pathlib import Path

from gdag import gitcmd
from gdag.errors import StoreError
from gdag.repo import Store

GDAG_REFS = "refs/gdag/"


def make_private(user: Store) -> tuple[Store, int]:
    """Create the private store, moving any existing refs/gdag/* (and their objects) into it."""
    from dulwich.repo import Repo

    path = user.private_path
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (path / "HEAD").is_file():
        Repo.init_bare(str(path), mkdir=not path.exists()).close()
    refs = user.list_refs(GDAG_REFS)
    if refs:
        _fetch_refs(user, path)
    private = Store(
        path,
        user.workdir,
        user_gitdir=user.gitdir,
        user_commondir=user.commondir,
        config=user.config,
    )
    for ref, sha in refs.items():
        if private.read_ref(ref) != sha:
            raise StoreError(f"moving {ref} into the private store failed; nothing was removed")
    for ref, sha in refs.items():
        user.delete_ref(ref, sha)
    # Only now borrow the user's objects: the fetch above had to copy everything.
    info = path / "objects" / "info"
    info.mkdir(parents=True, exist_ok=True)
    # Relative, as git allows: the repository can be moved or copied whole.
    borrowed = os.path.relpath(user.objects_dir.resolve(), (path / "objects").resolve())
    (info / "alternates").write_text(borrowed + "\n")
    return private, len(refs)


def _fetch_refs(user: Store, path: Path) -> None:
    gitcmd.run(
        [
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            str(user.commondir),
            f"+{GDAG_REFS}*:{GDAG_REFS}*",
        ],
        git_dir=path,
        timeout=None,  # as long as copying the objects takes
        what="moving existing gdag refs into the private store",
    )
