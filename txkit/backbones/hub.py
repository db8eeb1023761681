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
        if not reachable(_host(url)):
            raise WeightsError(f"cannot download ImageNet weights for {name}: {_host(url)} is not reachable "
                               f"(offline?); download {url} and put it at {target}, or pass `weights` PATH "
                               f"or `weights` none")
        download(url, target, what=f"ImageNet weights for {name}")
    return torch.load(target, map_location="cpu", weights_only=True)


def download(url: str, target: Path, what: str) -> None:
    import torch

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"{target.parent}: cannot create the download folder for {what} ({exc.strerror or exc}); "
                           f"set TORCH_HOME to a writable folder, or pass `weights` PATH or `weights` none") from None
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            torch.hub.download_url_to_file(url, str(target), progress=True)
    except Exception as exc:
        raise WeightsError(f"cannot download {what} ({type(exc).__name__}); offline? download {url} and put it "
                           f"at {target}, or pass `weights` PATH or `weights` none") from None


def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def timm_pretrained(model_name: str, **kwargs):
    """Create a timm model with its pretrained weights: from the local Hugging Face cache when the file is
    there, else by download; offline with nothing cached, fail at once instead of retrying for a minute."""
    import timm

    cfg = timm.models.get_pretrained_cfg(model_name)
    repo = getattr(cfg, "hf_hub_id", None)
    cached = _cached_hub_file(repo) if repo else None
    if cached:
        return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay={"file": cached}, **kwargs)
    source = repo or getattr(cfg, "url", None) or "the timm hub"
    host = "huggingface.co" if repo else _host(getattr(cfg, "url", "") or "")
    if not host or not reachable(host):
        raise WeightsError(f"cannot get ImageNet weights for timm model {model_name!r}: {host or source} is not "
                           f"reachable; download model.safetensors from {source} and pass `weights` PATH, "
                           f"or use `weights` none")
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            return timm.create_model(model_name, pretrained=True, **kwargs)
    except Exception as exc:
        raise WeightsError(f"cannot download ImageNet weights for timm model {model_name!r} from {source} "
                           f"({type(exc).__name__}); download the weights file yourself and pass `weights` PATH "
                           f"(.safetensors or .pth), or `weights` none") from None


def _cached_hub_file(repo: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(repo, filename)
        if isinstance(path, str):
            return path
    return None


def _host(url: str) -> str | None:
    from urllib.parse import urlparse

    return urlparse(url).hostname
