"""A fixed colorizer: (N, 1, H, W) gray in [0, 1] -> (N, 3, H, W) in [0, 1]."""

import torch
from torch.nn import functional as F

from txkit import Colorizer


class EdgesColorizer(Colorizer):  # any nn.Module works; Colorizer checks the class attributes txkit reads
    # "unit": the output lies in [0, 1] and txkit applies the backbone's normalisation after it.
    output_kind = "unit"

    def __init__(self):
        super().__init__()
        sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4
        laplacian = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]) / 4
        self.register_buffer("kernels", torch.stack([sobel_x, sobel_x.T, laplacian]).unsqueeze(1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx, gy, lap = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.kernels).split(1, dim=1)
        magnitude = torch.sqrt(gx**2 + gy**2).clamp(0, 1)
        return torch.cat([x, magnitude, (lap + 0.5).clamp(0, 1)], dim=1)
