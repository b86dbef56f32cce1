"""Draw the book's system diagram (book/figures/system.svg): one MEAL V2 training step, left to right.

The intro shows how the pieces of the later chapters fit together: the frozen teachers, their two
averages (the mean of softmaxes is the distillation target, the mean of logits is what the official
code's discriminator sees), the KL loss, the discriminator and the student that both losses train.
The figure is drawn with matplotlib from this script, so it needs no network and no drawing program;
rerun it after changing it and commit the SVG:

    python book/figures/make_system_diagram.py            # writes book/figures/system.svg
    python book/figures/make_system_diagram.py OUT.svg    # writes elsewhere (the test does this)

The SVG is deterministic for a given matplotlib version: text is kept as text (``svg.fonttype:
none``, so the labels are searchable and scale with the page), the ids are salted with a fixed string
and the date is left out.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).with_name("system.svg")

FROZEN = "#dbe8f6"      # teachers and what is computed from them: no gradient
TRAINED = "#fde3c8"     # the student and the discriminator: both learn
LOSS = "#e6e6e6"
DATA = "#ffffff"
WIDTH = 10.0          # inches


def box(ax, x, y, w, h, title, detail="", color=DATA, dashed=False):
    """A rounded box centred at (x, y) with a bold title and an optional smaller second line."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=color, edgecolor="0.25", lw=1.2, ls="--" if dashed else "-"))
    if detail:
        ax.text(x, y + 0.15, title, ha="center", va="center", fontsize=12, fontweight="bold")
        ax.text(x, y - 0.19, detail, ha="center", va="center", fontsize=10)
    else:
        ax.text(x, y, title, ha="center", va="center", fontsize=12, fontweight="bold")
    return {"x": x, "y": y, "w": w, "h": h}


def arrow(ax, a, b, *, side_a="right", side_b="left", label="", dashed=False, color="0.2", rad=0.0, label_dy=0.12):
    """An arrow from a side of box ``a`` to a side of box ``b``, with an optional label at its middle."""
    def anchor(bx, side):
        return {"right": (bx["x"] + bx["w"] / 2, bx["y"]), "left": (bx["x"] - bx["w"] / 2, bx["y"]),
                "top": (bx["x"], bx["y"] + bx["h"] / 2), "bottom": (bx["x"], bx["y"] - bx["h"] / 2)}[side]

    start, end = anchor(a, side_a), anchor(b, side_b)
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, lw=1.3, color=color,
                                 ls="--" if dashed else "-", connectionstyle=f"arc3,rad={rad}", shrinkA=2, shrinkB=2))
    if label:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + label_dy, label, ha="center", va="bottom",
                fontsize=9.5, color=color, style="italic")


def draw() -> plt.Figure:
    # 10 inches wide, so that at the book's text width (about 690 px) its smallest text (9.5 pt) is 9 px.
    fig, ax = plt.subplots(figsize=(WIDTH, 6.0))
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, 6.0)
    ax.axis("off")

    images = box(ax, 0.8, 3.2, 1.5, 0.9, "images x", "one view", DATA)
    teachers = [box(ax, 2.85, y, 1.6, 0.75, f"teacher {name}", "frozen", FROZEN)
                for y, name in ((5.0, "1"), (4.1, "2"), (2.85, "K"))]
    ax.text(2.85, 3.5, "...", ha="center", va="center", fontsize=12)
    student = box(ax, 5.3, 1.2, 2.5, 0.9, "student", "logits z_s (trained)", TRAINED)

    probs = box(ax, 5.3, 4.6, 2.5, 0.9, "mean softmax", "p_e = mean softmax(z_t)", FROZEN)
    logits = box(ax, 5.3, 3.2, 2.5, 0.9, "mean logits", "z_bar = mean z_t", FROZEN)
    kl = box(ax, 8.3, 4.6, 2.5, 0.9, "KL loss", "soft CE to p_e", LOSS)
    disc = box(ax, 8.3, 3.2, 2.5, 0.9, "discriminator", "student or teacher?", TRAINED)
    total = box(ax, 8.4, 1.45, 1.9, 0.8, "total loss", "L_KL + L_D", LOSS)

    for t in teachers:
        arrow(ax, images, t)
        arrow(ax, t, probs)
        arrow(ax, t, logits)
    arrow(ax, images, student, side_a="bottom")
    arrow(ax, probs, kl)
    arrow(ax, logits, disc)
    # The student's logits go to both losses along one bus: as softmax(z_s) into the KL loss, as
    # "student" rows [1, 0] into the discriminator.
    bus_x, left = 6.8, kl["x"] - kl["w"] / 2
    ax.plot([student["x"] + student["w"] / 2, bus_x, bus_x], [student["y"], student["y"], kl["y"] - 0.22],
            color="0.2", lw=1.3, solid_capstyle="butt")
    for target in (kl, disc):
        y = target["y"] - 0.22
        ax.add_patch(FancyArrowPatch((bus_x, y), (left, y), arrowstyle="-|>", mutation_scale=12, lw=1.3,
                                     color="0.2", shrinkB=2))
    ax.text(bus_x + 0.06, 2.1, "z_s", ha="left", va="center", fontsize=9.5, color="0.2", style="italic")
    # KL -> total around the right-hand side, discriminator -> total straight down.
    route_x, right = 9.8, total["x"] + total["w"] / 2
    ax.plot([kl["x"] + kl["w"] / 2, route_x, route_x], [kl["y"], kl["y"], total["y"]], color="0.2", lw=1.3,
            solid_capstyle="butt")
    ax.add_patch(FancyArrowPatch((route_x, total["y"]), (right, total["y"]), arrowstyle="-|>",
                                 mutation_scale=12, lw=1.3, color="0.2", shrinkB=2))
    arrow(ax, disc, total, side_a="bottom", side_b="top")
    # Gradients: one backward pass of the total loss trains the student (and the discriminator).
    arrow(ax, total, student, side_a="bottom", side_b="bottom", rad=-0.3, dashed=True, color="tab:red")
    ax.text(5.0, 0.2, "one backward pass: gradients reach the student and the discriminator, never the teachers",
            ha="center", va="center", fontsize=10, color="tab:red", style="italic")

    legend = [(FROZEN, "frozen (no gradient)"), (TRAINED, "trained"), (LOSS, "loss")]
    for k, (color, text) in enumerate(legend):
        ax.add_patch(FancyBboxPatch((0.3 + 2.9 * k, 5.65), 0.3, 0.2, boxstyle="round,pad=0.01",
                                    facecolor=color, edgecolor="0.25"))
        ax.text(0.7 + 2.9 * k, 5.75, text, va="center", fontsize=10)
    return fig


def main(argv: list[str] | None = None) -> Path:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else OUT
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "meal-lite-system-diagram"}):
        fig = draw()
        fig.savefig(out, format="svg", metadata={"Date": None})
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(main())
