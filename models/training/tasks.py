"""What each shipped model learns: degradation parameters, their random ranges, eval levels.

Everything here is numpy; the network for each task is named, not built, so the evaluation
and the tests can use the degradations without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from models.training import degradations as deg
from models.training.data import ImagePool, augment

BLUR_CLASSES = ("in_focus", "defocus", "motion", "mixed")


@dataclass(frozen=True)
class BlurParams:
    """Motion and/or defocus blur, then Gaussian noise and optional JPEG re-compression."""

    motion_length_px: float = 0.0
    motion_angle_deg: float = 0.0
    defocus_radius_px: float = 0.0
    defocus_kind: str = "disk"
    noise_std: float = 0.0
    jpeg_quality: int = 0

    def psf(self) -> np.ndarray:
        """Motion box, then defocus PSF (the mixed model)."""
        motion = deg.motion_psf(self.motion_length_px, self.motion_angle_deg)
        defocus = deg.defocus_psf(self.defocus_radius_px, self.defocus_kind)
        return deg.combine_psfs(motion, defocus)

    def labels(self) -> list[float]:
        """What a PSF estimator should find.

        Motion length (px), 1.0 for motion along x, defocus radius (px), 1.0 for a disk.
        """
        along_x = float(abs(np.cos(np.deg2rad(self.motion_angle_deg))) > 0.5)
        disk = float(self.defocus_kind == "disk")
        return [self.motion_length_px, along_x, self.defocus_radius_px, disk]

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Degrade a sharp image."""
        out = np.clip(deg.blur(image, self.psf(), self.noise_std, rng), 0.0, 1.0)
        return deg.jpeg_roundtrip(out, self.jpeg_quality) if self.jpeg_quality else out


@dataclass(frozen=True)
class LowResParams:
    """``I = D(K * I) + N`` with a Gaussian PSF (paper 002)."""

    factor: int = 4
    sigma_px: float = 1.5
    noise_std: float = 0.0

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Degrade a sharp image to low resolution."""
        out = deg.low_resolution(image, self.factor, self.sigma_px, self.noise_std, rng)
        return np.clip(out, 0.0, 1.0)


@dataclass(frozen=True)
class VideoRateParams:
    """Video-rate bidirectional laser scan (paper 001): 2x binning, shot + dark noise."""

    peak_photons: float = 60.0
    dark_std_photons: float = 0.0
    line_shift_px: float = 0.0
    stretch_fill: float = 0.0
    factor: int = 2

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Degrade a sharp image into a video-rate frame."""
        return deg.video_rate_scan(
            image,
            self.peak_photons,
            self.dark_std_photons,
            self.line_shift_px,
            self.stretch_fill,
            rng,
        )


Params = BlurParams | LowResParams | VideoRateParams


def _jpeg(rng: np.random.Generator, probability: float = 0.3) -> int:
    return int(rng.integers(70, 96)) if rng.random() < probability else 0


def _noise(rng: np.random.Generator, max_std: float = 3 / 255) -> float:
    return float(rng.uniform(0.0, max_std))


def sample_motion(rng: np.random.Generator) -> BlurParams:
    """Box length 3-30 px along x or y (the scan axes), noise, optional JPEG."""
    return BlurParams(
        motion_length_px=float(rng.uniform(3.0, 30.0)),
        motion_angle_deg=float(rng.choice([0.0, 90.0])),
        noise_std=_noise(rng),
        jpeg_quality=_jpeg(rng),
    )


def sample_defocus(rng: np.random.Generator) -> BlurParams:
    """Disk radius 1-7 px or Gaussian sigma 0.5-5 px (half each), noise, optional JPEG."""
    kind = "disk" if rng.random() < 0.5 else "gaussian"
    radius = rng.uniform(1.0, 7.0) if kind == "disk" else 2 * rng.uniform(0.5, 5.0)
    return BlurParams(
        defocus_radius_px=float(radius),
        defocus_kind=kind,
        noise_std=_noise(rng),
        jpeg_quality=_jpeg(rng),
    )


def sample_blur_class(rng: np.random.Generator) -> tuple[BlurParams, int]:
    """A blur of a random class (in-focus, defocus, motion, mixed) with its label.

    In-focus tiles get at most a 0.5 px Gaussian; defocus radius 2-16 px (log-uniform: real
    widefield defocus far from focus is a Gaussian of sigma up to 8 px); motion length
    6-30 px at any angle; mixed: defocus radius 2-5 px and motion >= max(8, 2.5 r) px.
    Noise up to 6/255 for every class, so that noise on a blurred tile is not read as detail.
    """
    label = int(rng.integers(4))
    kind = "disk" if rng.random() < 0.5 else "gaussian"
    angle = float(rng.uniform(0.0, 180.0))
    if label == 0:
        params = BlurParams(defocus_radius_px=float(rng.uniform(0.0, 1.0)), defocus_kind="gaussian")
    elif label == 1:
        radius = float(np.exp(rng.uniform(np.log(2.0), np.log(16.0))))
        params = BlurParams(defocus_radius_px=radius, defocus_kind=kind)
    elif label == 2:
        params = BlurParams(motion_length_px=float(rng.uniform(6.0, 30.0)), motion_angle_deg=angle)
    else:
        radius = float(rng.uniform(2.0, 5.0))
        length = float(rng.uniform(max(8.0, 2.5 * radius), 30.0))
        params = BlurParams(length, angle, radius, kind)
    noise = _noise(rng, 6 / 255)
    noisy = BlurParams(**{**asdict(params), "noise_std": noise, "jpeg_quality": _jpeg(rng)})
    return noisy, label


def sample_low_res_x4(rng: np.random.Generator) -> LowResParams:
    """Gaussian PSF sigma 1.0-2.0 HR px, decimation 4, noise std 0-4/255."""
    return LowResParams(4, float(rng.uniform(1.0, 2.0)), _noise(rng, 4 / 255))


def sample_video_rate(rng: np.random.Generator) -> VideoRateParams:
    """Peak 20-300 photons (log-uniform), dark noise 0-2 photons, line shift 0 or +-0.3-1.5 px."""
    shift = 0.0 if rng.random() < 0.5 else float(rng.uniform(0.3, 1.5) * rng.choice([-1, 1]))
    return VideoRateParams(
        peak_photons=float(np.exp(rng.uniform(np.log(20.0), np.log(300.0)))),
        dark_std_photons=float(rng.uniform(0.0, 2.0)),
        line_shift_px=shift,
    )


HE_DATA = ["he_tiles", "nuclei/gbm40/images"]
FLUO_DATA = ["nuclei/coelho2009/gnf/images", "fluo_tiles"]


@dataclass(frozen=True)
class TaskConfig:
    """Everything that defines one shipped model, apart from its trained weights."""

    name: str
    task: str
    kind: str
    network: str
    network_kwargs: dict[str, Any]
    channels: int
    scale: int
    crop_px: int
    margin_px: int
    batch: int
    lr: float
    tile_px: int  # serving tile: input ratio (tile + 2 halo)^2 / tile^2 <= 1.2, memory < 1.5 GiB
    halo_px: int  # the receptive field, measured by models.receptive_field
    transpose: bool
    data: list[str]
    sample: Callable[[np.random.Generator], Any]
    levels: dict[str, Params]
    reference: str
    description: str
    min_tissue: float = 0.25
    clip_grad_norm: float = 0.0  # 0: no clipping

    def make_batch(self, pool: ImagePool, rng: np.random.Generator, size: int) -> dict:
        """A batch of NCHW float32 arrays: ``input``, ``target`` and more.

        Blur generators also get ``blur`` ``[N, 4]`` (:meth:`BlurParams.labels`); the
        classifier gets ``label`` and ``extent``.
        """
        inputs, targets, labels, extents, blurs = [], [], [], [], []
        m = self.margin_px
        for _ in range(size):
            sharp = augment(pool.random_crop(self.crop_px + 2 * m, rng), rng, self.transpose)
            if self.kind == "classifier":
                params, label = self.sample(rng)
                labels.append(label)
                extents.append(deg.psf_extent_px(params.psf()) if label else 0.0)
            else:
                params = self.sample(rng)
                if isinstance(params, BlurParams):
                    blurs.append(params.labels())
            degraded = params.apply(sharp, rng)
            lm = m // self.scale
            lc = self.crop_px // self.scale
            inputs.append(degraded[lm : lm + lc, lm : lm + lc])
            targets.append(sharp[m : m + self.crop_px, m : m + self.crop_px])
        batch = {
            "input": np.stack(inputs).transpose(0, 3, 1, 2).astype(np.float32),
            "target": np.stack(targets).transpose(0, 3, 1, 2).astype(np.float32),
        }
        if blurs:
            batch["blur"] = np.array(blurs, dtype=np.float32)
        if self.kind == "classifier":
            batch["label"] = np.array(labels, dtype=np.int64)
            batch["extent"] = np.array(extents, dtype=np.float32)[:, None]
        return batch


TASKS: dict[str, TaskConfig] = {
    "deblur-motion": TaskConfig(
        name="deblur-motion",
        task="deblur-motion",
        kind="generator",
        network="wiener-unet",
        network_kwargs={"channels": 3, "base": 24, "levels": 3},
        channels=3,
        scale=1,
        crop_px=160,
        margin_px=24,
        batch=8,
        lr=1e-3,
        tile_px=1024,
        halo_px=120,
        transpose=False,
        data=HE_DATA,
        sample=sample_motion,
        levels={
            "motion 5 px": BlurParams(5.0, 0.0, noise_std=1 / 255),
            "motion 15 px": BlurParams(15.0, 0.0, noise_std=1 / 255),
            "motion 15 px vertical": BlurParams(15.0, 90.0, noise_std=1 / 255),
            "motion 25 px": BlurParams(25.0, 0.0, noise_std=1 / 255),
        },
        reference="motion 15 px",
        description="Removes 1-D motion blur (box PSF 3-30 px along x or y) from RGB tiles.",
    ),
    "deblur-defocus": TaskConfig(
        name="deblur-defocus",
        task="deblur-defocus",
        kind="generator",
        network="defocus-wiener-unet",
        network_kwargs={"channels": 3, "base": 24, "levels": 3},
        channels=3,
        scale=1,
        crop_px=160,
        margin_px=32,
        batch=8,
        lr=1e-3,
        tile_px=1024,
        halo_px=40,
        transpose=True,
        data=HE_DATA,
        sample=sample_defocus,
        levels={
            "disk r=2 px": BlurParams(defocus_radius_px=2.0, noise_std=1 / 255),
            "disk r=4 px": BlurParams(defocus_radius_px=4.0, noise_std=1 / 255),
            "disk r=6 px": BlurParams(defocus_radius_px=6.0, noise_std=1 / 255),
            "gaussian sigma=2 px": BlurParams(
                defocus_radius_px=4.0, defocus_kind="gaussian", noise_std=1 / 255
            ),
        },
        reference="disk r=4 px",
        description="Removes defocus blur (disk radius 1-7 px or Gaussian sigma 0.5-5 px, "
        "with noise and JPEG re-compression) from RGB tiles of H&E brightfield slides. On "
        "fluorescence, or blur far beyond 7 px, it amplifies noise.",
        clip_grad_norm=2.0,
    ),
    "sr-x4": TaskConfig(
        name="sr-x4",
        task="super-resolution",
        kind="generator",
        network="srresnet",
        network_kwargs={"channels": 3, "scale": 4, "width": 32, "blocks": 8},
        channels=3,
        scale=4,
        crop_px=128,
        margin_px=16,
        batch=16,
        lr=5e-4,
        tile_px=512,
        halo_px=8,
        transpose=True,
        data=HE_DATA,
        sample=sample_low_res_x4,
        levels={
            "sigma 1.0, noise 1/255": LowResParams(4, 1.0, 1 / 255),
            "sigma 1.5, noise 2/255": LowResParams(4, 1.5, 2 / 255),
            "sigma 2.0, noise 3/255": LowResParams(4, 2.0, 3 / 255),
        },
        reference="sigma 1.5, noise 2/255",
        description="4x single-image super-resolution of RGB tiles (Gaussian PSF, decimation, "
        "noise: paper 002). tile_px and halo_px are in input (low-resolution) pixels.",
    ),
    "sr-x2": TaskConfig(
        name="sr-x2",
        task="super-resolution",
        kind="generator",
        network="unet-sr",
        network_kwargs={"channels": 1, "scale": 2, "base": 20, "levels": 4},
        channels=1,
        scale=2,
        crop_px=128,
        margin_px=8,
        batch=16,
        lr=1e-3,
        tile_px=512,
        halo_px=16,
        transpose=False,
        data=FLUO_DATA,
        sample=sample_video_rate,
        levels={
            "peak 20 photons": VideoRateParams(20.0),
            "peak 60 photons": VideoRateParams(60.0),
            "peak 60 photons, line shift 1 px": VideoRateParams(60.0, line_shift_px=1.0),
            "peak 200 photons": VideoRateParams(200.0),
        },
        reference="peak 60 photons",
        description="Video-rate laser-scanning frames (1 channel): 2x super-resolution, "
        "shot-noise removal and odd/even line-shift correction (paper 001). The sinusoidal "
        "mirror stretch depends on the absolute x position in the frame, so undo it first with "
        "models.training.degradations.undo_sinusoidal_stretch before tiling.",
        min_tissue=0.05,
    ),
    "blur-classifier": TaskConfig(
        name="blur-classifier",
        task="blur-classification",
        kind="classifier",
        network="classifier",
        network_kwargs={"channels": 3, "width": 16, "average_rotated": True, "spectrum_bins": 16},
        channels=3,
        scale=1,
        crop_px=128,
        margin_px=40,
        batch=32,
        lr=2e-3,
        tile_px=128,
        halo_px=0,
        transpose=True,
        data=HE_DATA + FLUO_DATA,
        sample=sample_blur_class,
        levels={},
        reference="",
        description="Classifies a 128 px RGB tile (brightfield H&E, or fluorescence with the "
        "grey channel repeated) as in-focus, defocus, motion or mixed and estimates the blur "
        "extent: sqrt(12 * PSF variance) in px (L for a box of length L, 2.45 r for a disk of "
        "radius r, 4.9 sigma for a Gaussian).",
        min_tissue=0.05,
    ),
}
