"""The torch networks: U-Net deblurring generator, residual SR generator, classifier, critic."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with 'same' padding."""
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1)


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by a leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            conv3(in_ch, out_ch),
            nn.LeakyReLU(0.1, inplace=True),
            conv3(out_ch, out_ch),
            nn.LeakyReLU(0.1, inplace=True),
        )


class UNetDeblur(nn.Module):
    """U-Net generator with skip connections and a global residual.

    The input is first folded by pixel-unshuffle (space-to-depth, factor 2), so the finest
    level runs at half resolution; this halves the cost and doubles the receptive field.
    Decoder upsampling is bilinear resize followed by a convolution (no transposed
    convolutions, hence no checkerboard artifacts); the output is unfolded by pixel shuffle.
    Height and width must be multiples of ``2 ** levels``.
    """

    def __init__(self, channels: int = 3, base: int = 24, levels: int = 3) -> None:
        super().__init__()
        self.channels = channels
        self.levels = levels
        widths = [base * 2**i for i in range(levels)]
        self.head = DoubleConv(channels * 4, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(conv3(widths[i], widths[i + 1], stride=2), nn.LeakyReLU(0.1, True))
            for i in range(levels - 1)
        )
        self.enc = nn.ModuleList(
            DoubleConv(widths[i + 1], widths[i + 1]) for i in range(levels - 1)
        )
        self.up = nn.ModuleList(conv3(widths[i + 1], widths[i]) for i in range(levels - 1))
        self.dec = nn.ModuleList(DoubleConv(widths[i] * 2, widths[i]) for i in range(levels - 1))
        self.tail = conv3(widths[0], channels * 4)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Return the restored image, same shape as the input."""
        x = self.head(F.pixel_unshuffle(image, 2))
        skips = [x]
        for down, enc in zip(self.down, self.enc, strict=True):
            x = enc(down(x))
            skips.append(x)
        skips.pop()
        for i in reversed(range(self.levels - 1)):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = F.leaky_relu(self.up[i](x), 0.1)
            x = self.dec[i](torch.cat([x, skips[i]], dim=1))
        return image + F.pixel_shuffle(self.tail(x), 2)


class ResBlock(nn.Module):
    """conv-ReLU-conv with an identity skip (no batch norm, as in EDSR)."""

    def __init__(self, width: int, res_scale: float = 0.2) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3(width, width), nn.ReLU(inplace=True), conv3(width, width))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update."""
        return x + self.res_scale * self.body(x)


class SRResNet(nn.Module):
    """Residual super-resolution generator with pixel-shuffle upsampling (x2 or x4).

    Output = bicubic-free learned upsampling plus a nearest-neighbour skip of the input, so
    the network only learns the residual detail.
    """

    def __init__(self, channels: int = 3, scale: int = 4, width: int = 32, blocks: int = 8) -> None:
        super().__init__()
        if scale not in (2, 4):
            raise ValueError("scale must be 2 or 4")
        self.scale = scale
        self.head = conv3(channels, width)
        self.body = nn.Sequential(*(ResBlock(width) for _ in range(blocks)), conv3(width, width))
        ups: list[nn.Module] = []
        for _ in range(scale // 2 - 1):
            ups += [conv3(width, width * 4), nn.PixelShuffle(2), nn.LeakyReLU(0.1, True)]
        ups += [conv3(width, channels * 4), nn.PixelShuffle(2)]
        self.upsample = nn.Sequential(*ups)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Return the image upscaled by ``scale``."""
        x = self.head(image)
        x = x + self.body(x)
        base = F.interpolate(image, scale_factor=float(self.scale), mode="nearest")
        return base + self.upsample(x)


class BlurClassifier(nn.Module):
    """Strided-convolution classifier: blur class logits and blur extent in pixels.

    Outputs ``(logits [N, 4], extent [N, 1])``; classes are in-focus, defocus, motion, mixed.
    Global average pooling makes it accept any tile size; it is trained on 128 px tiles.
    """

    def __init__(self, channels: int = 3, width: int = 16, classes: int = 4) -> None:
        super().__init__()
        widths = [width, width * 2, width * 4, width * 4, width * 8]
        layers: list[nn.Module] = []
        prev = channels
        for w in widths:
            layers += [conv3(prev, w, stride=2), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            layers += [conv3(w, w), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            prev = w
        self.features = nn.Sequential(*layers)
        self.logits = nn.Linear(prev * 2, classes)
        self.extent = nn.Linear(prev * 2, 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return class logits and the blur extent (pixels, non-negative)."""
        f = self.features(image - 0.5)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.logits(pooled), F.softplus(self.extent(pooled)) * 10.0


class PatchCritic(nn.Module):
    """PatchGAN critic (pix2pix): one real/fake score per overlapping ~34 px patch."""

    def __init__(self, channels: int = 3, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, width * 2, 4, 2, 1),
            nn.InstanceNorm2d(width * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width * 2, width * 4, 4, 1, 1),
            nn.InstanceNorm2d(width * 4),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width * 4, 1, 4, 1, 1),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Return a map of patch scores (logits)."""
        return self.net(image)
