"""Where the benchmarks find the PyTorch peers' code: git mirrors or clones fetched by the user, never
committed. A peer's repository is ``--mirror PATH``, or ``$AILA_PEER_MIRRORS/<owner>+<name>`` (a folder of
mirrors, e.g. the one the ``fetch`` tool fills), or ``$AILA_PEER_MIRRORS/<name>`` (a plain clone). Its files are
copied into the ignored ``bench/.peers/`` once, which is what travels to a GPU machine."""

from __future__ import annotations

import os
import pathlib

MIRRORS_ENV = "AILA_PEER_MIRRORS"


def mirror_dir(repo: str, override: str | os.PathLike | None = None) -> pathlib.Path | None:
  """The git directory (bare mirror or clone) of GitHub ``repo`` ('owner/name'); None if none is known."""
  if override:
    return pathlib.Path(override)
  root = os.environ.get(MIRRORS_ENV)
  if not root:
    return None
  owner, name = repo.split("/")
  for candidate in (pathlib.Path(root) / f"{owner}+{name}" / "repo", pathlib.Path(root) / f"{owner}+{name}",
                    pathlib.Path(root) / name):
    if candidate.is_dir():
      return candidate
  return None


def missing(repo: str, needed: pathlib.Path, mirror: pathlib.Path | None) -> FileNotFoundError:
  """The error when neither ``needed`` nor a mirror of ``repo`` is there: says what to do."""
  where = f"no mirror at {mirror}" if mirror else f"no --mirror and no ${MIRRORS_ENV}/{repo.replace('/', '+')}"
  return FileNotFoundError(f"{needed} is missing and there is {where} to copy it from: clone github.com/{repo} "
                           f"and pass --mirror PATH (or set ${MIRRORS_ENV} to the folder of clones), or put "
                           f"the peer's files at {needed}")
