"""`txkit colorize`: the 3-channel images a trained colorizer produces, and input/output panels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from txkit.datasets.base import load_gray
from txkit.training.data import resize_gray
from txkit.training.evaluation import load_run


@torch.no_grad()
def colorize_images(run_dir: str, images: list[str], out: str | Path) -> list[dict]:
    net, meta = load_run(run_dir)
    size = meta["resolved"]["image_size"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in images:
        gray = resize_gray(load_gray(path), size)
        x = torch.tensor(gray, dtype=torch.float32).div(255.0)[None, None]
        rgb = net.colorized(x)[0].permute(1, 2, 0).numpy()
        stem = Path(path).stem
        image_png, panel_png = out / f"{stem}_colorized.png", out / f"{stem}_panel.png"
        save_rgb(rgb, image_png)
        save_panel(gray, rgb, panel_png, f"{meta['config']['colorizer']} ({Path(run_dir).name})")
        written.append({"image": path, "colorized": str(image_png), "panel": str(panel_png),
                        "channel_means": [float(c) for c in rgb.mean(axis=(0, 1))]})
    return written


def save_rgb(rgb: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray((rgb * 255).round().astype(np.uint8), mode="RGB").save(path)


def save_panel(gray: np.ndarray, rgb: np.ndarray, path: Path, title: str) -> None:
    """Input, colorized output, and its R, G, B channels side by side (thesis Figs. 5.1-5.4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("input", gray, "gray"), ("output", rgb, None)] + [
        (name, rgb[..., k], "gray") for k, name in enumerate(("R channel", "G channel", "B channel"))]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3))
    for ax, (name, image, cmap) in zip(axes, panels):
        ax.imshow(image, cmap=cmap, vmin=0, vmax=255 if name == "input" else 1)
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
