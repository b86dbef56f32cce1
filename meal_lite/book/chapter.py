"""The book's one-call chapter setup: the profile, its configuration, the data and the teachers.

Every chapter starts the same way: resolve the profile (``MEAL_LITE_PROFILE``, default
``imagenette``), load its packaged configuration, show the part of it the chapter uses (the whole
configuration one click away, collapsed), and build what the chapter works on - the datasets, the
held-out loaders and, from chapter 2 on, the frozen teacher ensemble. :func:`setup` does all of it
and returns the :class:`~meal_lite.experiments.protocol.Experiment`.
"""

from __future__ import annotations

import html
from typing import Sequence

from meal_lite.book.figures import apply_style
from meal_lite.config.schema import format_config
from meal_lite.experiments.protocol import Experiment, base_config, prepare_experiment
from meal_lite.experiments.protocol_settings import BOOK_SETTINGS
from meal_lite.config.profiles import resolve_profile

__all__ = ["setup", "show_config"]


def show_config(cfg, sections: Sequence[str]) -> None:
    """Print the ``sections`` of ``cfg``; in a notebook, add the full configuration as a collapsed block."""
    print(f"profile: {cfg.profile}")
    print(format_config(cfg, sections), end="")
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:  # plain Python: the sections are enough
        return
    if get_ipython() is None:
        return
    full = html.escape(format_config(cfg))
    display(HTML(f"<details><summary>The full configuration ({cfg.profile} profile)</summary><pre>{full}</pre></details>"))


def setup(
    sections: Sequence[str] = ("data", "student"),
    *,
    teachers: bool = True,
    profile: str | None = None,
    verbose: bool = True,
) -> Experiment:
    """Everything a chapter needs, in one call; returns the :class:`~meal_lite.experiments.protocol.Experiment`.

    ``sections`` are the configuration sections the chapter talks about (shown at its top);
    ``teachers=False`` skips building the ensemble (chapter 1 only looks at the data).
    With the teachers comes the protocol's shared baseline, the student chapters 3 and 5 start from: read
    from the cache folder, or, the first time, trained in a one-thread worker while the teachers are built
    (:func:`~meal_lite.experiments.protocol.prepare_experiment`), so that on a CPU the first chapter to
    need the teachers trains both side by side.
    Figures drawn afterwards get the book's figure style (:func:`~meal_lite.book.figures.apply_style`).
    """
    apply_style()
    cfg = base_config(resolve_profile(profile))
    show_config(cfg, sections)
    if not teachers:
        return Experiment(cfg, verbose=verbose, teachers=False)
    return prepare_experiment(cfg, BOOK_SETTINGS[cfg.profile], verbose=verbose)
