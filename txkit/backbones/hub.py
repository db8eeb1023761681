"""ImageNet weights from the torchvision and timm hubs: use the local cache, try one quick download, and
fail within seconds offline with a message that says which file to put where."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path

from txkit.errors import WeightsError

DOWNLOAD_TIMEOUT_S = 10


@contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def torchvision_imagenet_state(name: str) -> dict:
    import torch
    import torchvision

    url = torchvision.models.get_model_weights(name).DEFAULT.url
    target = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not target.exists():
        download(url, target, what=f"ImageNet weights for {name}")
    return torch.load(target, map_location="cpu", weights_only=True)


def download(url: str, target: Path, what: str) -> None:
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            torch.hub.download_url_to_file(url, str(target), progress=True)
    except Exception as exc:
        raise WeightsError(f"cannot download {what} ({type(exc).__name__}); offline? download {url} and put it "
                           f"at {target}, or pass --weights PATH or --weights none") from None


def timm_pretrained(model_name: str, **kwargs):
    """Create a timm model with its pretrained weights, from the local HF cache if the hub is unreachable."""
    import os

    import timm

    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(DOWNLOAD_TIMEOUT_S))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(DOWNLOAD_TIMEOUT_S))
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            return timm.create_model(model_name, pretrained=True, **kwargs)
    except Exception as exc:
        cfg = timm.models.get_pretrained_cfg(model_name)
        source = (cfg.hf_hub_id or cfg.url or "the timm hub") if cfg else "the timm hub"
        raise WeightsError(f"cannot get ImageNet weights for timm model {model_name!r} from {source} "
                           f"({type(exc).__name__}); offline? download the weights file yourself and pass "
                           f"--weights PATH (.safetensors or .pth), or --weights none") from None
