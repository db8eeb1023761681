"""`txkit colorize`: the 3-channel images a trained colorizer produces, and input/output panels (beside the
`colorizer-output` visualizer, which shows the same output as a visualization)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from txkit.datasets.base import load_gray
from txkit.datasets.intensity import InputCheck, load_file, run_rule
from txkit.datasets.pixels import as_float, resize_gray
from txkit.run.load import load_run
from txkit.visualizers.pipeline import unique_stems


@torch.no_grad()
def colorize_images(run_dir: str, images: list[str], out: str | Path) -> list[dict]:
    """Per image: the colorized PNG and the panel. The network gets the image through the run's intensity rule
    (with `intensity` hu the true HU, so the window colorizer's channels are its windows on them); the panel's
    input is the image's default display (DICOM: the header window, else -1024..3071 HU for CT)."""
    net, meta = load_run(run_dir)
    size = meta["resolved"]["image_size"]
    rule = run_rule(meta)
    check = InputCheck(rule)  # an image of a kind training never saw: refused, or one warning per kind
    check.files(images)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path, stem in zip(images, unique_stems(images)):  # a.dcm twice, or x/a.dcm and y/a.dcm: a, a-2
        x = torch.from_numpy(as_float(load_file(path, size, rule, check=check)))[None, None]
        gray = resize_gray(load_gray(path, missing="check the path"), size)
        rgb = net.colorized(x)[0].permute(1, 2, 0).numpy()
        image_png, panel_png = out / f"{stem}_colorized.png", out / f"{stem}_panel.png"
        save_rgb(rgb, image_png)
        title = f"{meta['config']['colorizer']} ({Path(run_dir).name}), intensity {rule.text}"
        save_panel(gray, rgb, panel_png, title, _channel_names(net))
        written.append({"image": path, "colorized": str(image_png), "panel": str(panel_png), "intensity": rule.text,
                        "network_input": [float(x.min()), float(x.max())],
                        "channel_means": [float(c) for c in rgb.mean(axis=(0, 1))]})
    return written


def _channel_names(net) -> list[str]:
    """"R: L 40 / W 400" (level / width in HU) per channel of a window colorizer, else "R channel"..."""
    windows = getattr(net.colorizer, "windows", None)
    names = ("R", "G", "B")
    if windows is None or len(windows) != 3:
        return [f"{name} channel" for name in names]
    return [f"{name}: L {level:g} / W {width:g}" for name, (level, width) in zip(names, windows.tolist())]


def save_rgb(rgb: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray((rgb * 255).round().astype(np.uint8), mode="RGB").save(path)


def save_panel(gray: np.ndarray, rgb: np.ndarray, path: Path, title: str,
               channels=("R channel", "G channel", "B channel")) -> None:
    """Input, colorized output, and its R, G, B channels side by side (thesis Figs. 5.1-5.4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("input", gray, "gray"), ("output", rgb, None)] + [
        (name, rgb[..., k], "gray") for k, name in enumerate(channels)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3))
    for ax, (name, image, cmap) in zip(axes, panels):
        ax.imshow(image, cmap=cmap, vmin=0, vmax=255 if name == "input" else 1)
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.94))  # room for the title above the panel names
    fig.savefig(path, dpi=100)
    plt.close(fig)
