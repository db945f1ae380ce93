"""Where data is read from and decoded images are cached, by default.

Like scikit-learn (``$SCIKIT_LEARN_DATA``, else ``~/scikit_learn_data``) and Hugging Face
(``$HF_HOME``, else ``~/.cache/huggingface``), the runner reads an environment variable
first and falls back to a per-user folder, never to the installed package:

- data root (``dataset.root``): ``$RUNNER_DATA``, else ``$XDG_DATA_HOME/runner/data``,
  else ``~/.local/share/runner/data`` (the XDG base-directory default);
- decode cache (``dataset.cache_dir``): ``$RUNNER_CACHE``, else
  ``$XDG_CACHE_HOME/runner``, else ``~/.cache/runner``.

``conf/common/dataset.yaml`` spells those rules with the ``first_path`` resolver, so
``runner --cfg job`` shows them as they are written there, e.g.
``${first_path:'$RUNNER_DATA','$XDG_DATA_HOME/runner/data','~/.local/share/runner/data'}``,
and the run's log shows the folders they resolved to.
"""

from __future__ import annotations

import os
import re

_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def first_path(*candidates: str) -> str:
    """The first of ``candidates`` whose ``$VARIABLES`` are all set and not empty, with
    them and a leading ``~`` expanded; the last candidate when none qualifies.

    ``first_path("$RUNNER_DATA", "~/.local/share/runner/data")`` is ``$RUNNER_DATA``
    when it is set, else the home folder's ``.local/share/runner/data``. Relative results
    stay relative (to the working directory), as a relative ``dataset.root`` always has.
    """
    if not candidates:
        raise ValueError("first_path needs at least one candidate path")
    for candidate in candidates:
        names = [a or b for a, b in _VARIABLE.findall(str(candidate))]
        if all(os.environ.get(name) for name in names):
            return _expand(str(candidate))
    return _expand(str(candidates[-1]))


def _expand(path: str) -> str:
    def value(match: re.Match[str]) -> str:
        return os.environ.get(match.group(1) or match.group(2), "")

    return os.path.expanduser(_VARIABLE.sub(value, path))


def register_resolvers() -> None:
    """Register ``first_path`` with OmegaConf (once)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("first_path"):
        OmegaConf.register_new_resolver("first_path", first_path)
