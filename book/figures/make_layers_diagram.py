"""Draw the book's layer diagram (book/figures/layers.svg): the package's folders and the direction of their imports.

The intro shows where each piece of ``meal_lite`` lives: one folder per concern, stacked so that a
module imports only from its own layer and the layers below it. ``LAYERS`` below is that order, bottom
to top; ``tests/test_package_shape.py`` enforces the same order on every import of the package, and
``tests/test_publishing.py`` checks that the two lists agree and that the committed SVG is this
script's output. Text is kept as text and the drawing is deterministic (see make_system_diagram.py):

    python book/figures/make_layers_diagram.py            # writes book/figures/layers.svg
    python book/figures/make_layers_diagram.py OUT.svg    # writes elsewhere (the test does this)
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).with_name("layers.svg")
WIDTH = 6.4  # inches: at three quarters of the book's text width its smallest text (9.5 pt) is about 9.5 px

#: The layers from the bottom up, as tests/test_package_shape.py orders them, with what each holds.
LAYERS = (
    ("base", "meal_lite/*.py", "errors, settings, files, network, checkpoint, lazy"),
    ("config", "config/", "typed configuration, profiles, the paper's configs"),
    ("core", "core/", "MEAL V2 itself: ensemble, losses, discriminator, objective"),
    ("data", "data/", "datasets, transforms, seeded loaders, soft-label format"),
    ("models", "models/", "timm students and teachers, where weights come from"),
    ("training", "training/", "the Trainer, run assembly, DDP, evaluation"),
    ("experiments", "experiments/", "the book's protocol, dark knowledge, statistics"),
    ("book", "book/", "one-call chapter setup"),
    ("cli", "cli.py", "the meal-lite command"),
)
CORE = "#fde3c8"   # MEAL V2 itself
OTHER = "#dbe8f6"


def draw() -> plt.Figure:
    rows, row_h, gap = len(LAYERS), 0.62, 0.28
    height = rows * row_h + (rows - 1) * gap + 0.3
    fig, ax = plt.subplots(figsize=(WIDTH, height))
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, height)
    ax.axis("off")
    left, box_w = 0.15, WIDTH - 0.9
    centres = []
    for k, (layer, folder, what) in enumerate(LAYERS):
        y = 0.15 + k * (row_h + gap) + row_h / 2
        centres.append(y)
        color = CORE if layer == "core" else OTHER
        ax.add_patch(FancyBboxPatch((left, y - row_h / 2), box_w, row_h, boxstyle="round,pad=0.02,rounding_size=0.06",
                                    facecolor=color, edgecolor="0.25", lw=1.1))
        ax.text(left + 0.12, y + 0.12, folder, ha="left", va="center", fontsize=11, fontweight="bold",
                family="monospace")
        ax.text(left + 0.12, y - 0.14, what, ha="left", va="center", fontsize=9.5)
    # Imports point downward: one arrow between neighbouring layers, and one long arrow on the right
    # for "any layer below", so the reader sees that skipping layers downward is allowed too.
    x = left + box_w - 0.35
    for lower, upper in zip(centres, centres[1:]):
        ax.add_patch(FancyArrowPatch((x, upper - row_h / 2), (x, lower + row_h / 2), arrowstyle="-|>",
                                     mutation_scale=11, lw=1.2, color="0.2", shrinkA=1, shrinkB=1))
    side = left + box_w + 0.3
    ax.add_patch(FancyArrowPatch((side, centres[-1]), (side, centres[0]), arrowstyle="-|>", mutation_scale=12,
                                 lw=1.2, color="0.35"))
    ax.text(side + 0.12, (centres[0] + centres[-1]) / 2, "imports point downward only", rotation=90,
            ha="left", va="center", fontsize=9.5, color="0.2", style="italic")
    return fig


def main(argv: list[str] | None = None) -> Path:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else OUT
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "meal-lite-layers-diagram"}):
        fig = draw()
        fig.savefig(out, format="svg", metadata={"Date": None})
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(main())
