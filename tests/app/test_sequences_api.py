"""Frame sequences through HTTP: simulated scans uploaded, registered, restored, viewed."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
import tifffile
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.transform import resize

from tests.app.browser import chromium_page
from tests.app.server import Server, wait_for_job, zarr_nodes
from tests.engine.test_linescan import hematoxylin_image, scan
from tests.scan_simulation import cut_frames, motion_blur, tissue_canvas
from workers.engine.mosaic import MosaicReader
from workers.engine.scan_layout import ScanLayout
from workers.settings import ZOO_DIR

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A serpentine continuous-stage scan: 3 rows of 5 frames of 256 px, 176 px apart along x,
# rows 192 px apart, 9 px of motion blur, and a stage error of up to 3 px nobody is told.
FRAME, STEP, ROW_STEP, BLUR, JITTER, MARGIN = 256, 176, 192, 9, 3, 8
PIXEL_UM, EXPOSURE_S = 0.5, 0.01
SPEED = BLUR * PIXEL_UM / EXPOSURE_S
CONTINUOUS = {
    "mode": "continuous-stage",
    "pixel_size_um": PIXEL_UM,
    "stage_speed_um_s": SPEED,
    "exposure_s": EXPOSURE_S,
    "frame_rate_hz": SPEED / (STEP * PIXEL_UM),
    "scan_axis": "x",
    "layout": {"rows": 3, "frames_per_row": 5, "serpentine": True, "row_step_um": 96.0},
}
LASER = {"mode": "laser-scan", "pixel_size_um": 0.4, "frame_rate_hz": 15.0, "bidirectional": True}
LINE_SHIFT = 1.5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("sequences-api")
    env = {"RESTORE_DATA_DIR": str(data / "var"), "RESTORE_MODELS_DIRS": f'["{ZOO_DIR}"]'}
    server = Server(env, data / "server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client(timeout=120) as client:
        yield client


class Scan:
    """The simulated scan: sharp tissue, blurred frames, where each frame really was."""

    def __init__(self) -> None:
        self.layout = ScanLayout(3, 5, True, STEP, ROW_STEP, "x", (FRAME, FRAME))
        self.nominal = self.layout.nominal_positions()
        width, height = (self.nominal.max(axis=0) + FRAME + 2 * MARGIN).astype(int)
        self.sharp = tissue_canvas(height, width)
        jitter = np.random.default_rng(7).uniform(-JITTER, JITTER, self.nominal.shape)
        self.true = np.rint(self.nominal + MARGIN + jitter).astype(int)
        blurred = motion_blur(self.sharp, BLUR, "x")
        self.frames = cut_frames(blurred, self.true, (FRAME, FRAME))


@pytest.fixture(scope="module")
def simulated() -> Scan:
    return Scan()


def zip_of(frames: list[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    order = np.random.default_rng(0).permutation(len(frames))  # stored out of order
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in order:
            png = io.BytesIO()
            _png(frames[index], png)
            archive.writestr(f"scan/frame_{index + 1}.png", png.getvalue())
    return buffer.getvalue()


def _png(pixels: np.ndarray, target: io.BytesIO) -> None:
    Image.fromarray(pixels).save(target, format="PNG")


def tiff_of(frames: list[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer, np.stack(frames), photometric="rgb" if frames[0].ndim == 3 else "minisblack"
    )
    return buffer.getvalue()


def mp4_of(frames: list[np.ndarray], rate: int = 5) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = FRAME, FRAME
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "8"}
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def post_sequence(
    client: httpx.Client, name: str, content: bytes, metadata: dict | str | None
) -> httpx.Response:
    data = {} if metadata is None else {"metadata": json.dumps(metadata)}
    if isinstance(metadata, str):
        data = {"metadata": metadata}
    return client.post("/v1/sequences", files={"file": (name, content)}, data=data)


@pytest.fixture(scope="module")
def uploads(client: httpx.Client, simulated: Scan) -> dict[str, dict]:
    """The same scan as a zip of PNGs, a multi-page TIFF and an MP4."""
    files = {
        "zip": ("scan.zip", zip_of(simulated.frames)),
        "tiff": ("scan.tif", tiff_of(simulated.frames)),
        "mp4": ("scan.mp4", mp4_of(simulated.frames)),
    }
    created = {}
    for kind, (name, content) in files.items():
        response = post_sequence(client, name, content, CONTINUOUS)
        assert response.status_code == 201, response.text
        created[kind] = response.json()
    return created


@pytest.fixture(scope="module")
def mosaics(client: httpx.Client, uploads: dict[str, dict]) -> dict[str, dict]:
    """A finished ``auto`` job on each upload of the scan."""
    jobs = {}
    for kind, sequence in uploads.items():
        created = client.post("/v1/jobs", json={"sequence_id": sequence["id"]})
        assert created.status_code == 202, created.text
        jobs[kind] = created.json()
    return {kind: wait_for_job(client, job["id"], timeout_s=300) for kind, job in jobs.items()}


def read_output(server: Server, job: dict) -> list[np.ndarray]:
    """The output's levels, as an independent OME-Zarr reader sees them."""
    node = zarr_nodes(server, job["output_url"])[0]
    return [np.asarray(level) for level in node.data]


def test_a_sequence_upload_reports_frames_blur_and_step(uploads: dict[str, dict]) -> None:
    for kind, sequence in uploads.items():
        assert sequence["frame_count"] == 15 and sequence["channels"] == 3, kind
        assert (sequence["frame_width"], sequence["frame_height"]) == (FRAME, FRAME)
        assert sequence["motion_blur_px"] == pytest.approx(BLUR)
        assert sequence["nominal_step_px"] == pytest.approx([STEP, 0.0])
        assert sequence["mode"] == "continuous-stage"
    assert uploads["mp4"]["container"] == "video" and uploads["mp4"]["container_rate_hz"] == 5.0
    assert uploads["zip"]["container"] == "zip" and uploads["tiff"]["container"] == "tiff"


def test_every_frame_is_placed_within_a_pixel(mosaics: dict[str, dict], simulated: Scan) -> None:
    for kind, job in mosaics.items():
        assert job["state"] == "completed", (kind, job["error"])
        assert job["model"] == "auto" and job["params"]["models"] == ["deblur-motion"]
        registration = job["metrics"]["registration"]
        placed = np.asarray(registration["positions"])
        error = np.abs((placed - placed[0]) - (simulated.true - simulated.true[0])).max()
        print(f"{kind}: largest placement error {error:.3f} px")
        assert error <= 1.0, kind
        assert registration["pairs_total"] == len(simulated.layout.neighbour_pairs())
        assert all("residual_px" in pair for pair in registration["pairs"])
        assert registration["residual_px"]["max"] < 1.0


def _aligned_ssim(image: np.ndarray, sharp: np.ndarray, corner: np.ndarray) -> float:
    """SSIM of an image against the sharp tissue, its pixel (0, 0) at ``corner`` (x, y)."""
    x, y = corner
    height, width = image.shape[:2]
    inner = (slice(24, height - 24), slice(24, width - 24))  # away from uncovered corners
    truth = sharp[y : y + height, x : x + width]
    return float(structural_similarity(image[inner], truth[inner], channel_axis=2, data_range=255))


def test_the_restored_mosaic_beats_blurred_frames_at_nominal_places(
    server: Server, mosaics: dict[str, dict], simulated: Scan
) -> None:
    job = mosaics["zip"]
    restored = np.moveaxis(read_output(server, job)[0], 0, 2)
    placed = np.asarray(job["metrics"]["registration"]["positions"])
    frame_0 = np.rint(placed[0]).astype(int)
    ssim_restored = _aligned_ssim(restored, simulated.sharp, simulated.true[0] - frame_0)
    frames, scores = simulated.frames, {}
    for positions, name in ((simulated.nominal, "nominal"), (placed, "registered")):
        mosaic = MosaicReader(lambda i: frames[i], positions, (FRAME, FRAME))
        blurred = mosaic.read_region((0, 0), 0, (mosaic.info.width, mosaic.info.height))
        corner = simulated.true[0] - np.rint(positions[0] - positions.min(axis=0)).astype(int)
        score = _aligned_ssim(blurred, simulated.sharp, corner)
        print(f"SSIM against the sharp tissue: blurred frames at {name} places {score:.3f}")
        scores[name] = score
    print(f"SSIM against the sharp tissue: restored mosaic {ssim_restored:.3f}")
    assert ssim_restored > scores["nominal"] + 0.3
    assert ssim_restored > scores["registered"] + 0.15  # deblur-motion, told the stage's PSF


def test_zip_tiff_and_mp4_give_the_same_mosaic(server: Server, mosaics: dict[str, dict]) -> None:
    images = {kind: read_output(server, job)[0].astype(float) for kind, job in mosaics.items()}
    assert images["zip"].shape == images["tiff"].shape == images["mp4"].shape
    assert np.abs(images["zip"] - images["tiff"]).max() <= 1
    psnr = peak_signal_noise_ratio(images["zip"], images["mp4"], data_range=255)
    print(f"MP4 mosaic against the zip's: PSNR {psnr:.1f} dB")
    assert psnr > 30


def test_the_mosaic_is_served_like_a_slide(client: httpx.Client, mosaics: dict[str, dict]) -> None:
    job = mosaics["zip"]
    for url in (job["dzi_url"], job["input_dzi_url"]):
        response = client.get(url)
        assert response.status_code == 200 and "<Image" in response.text
    assert client.get(f"/v1/jobs/{job['id']}/input_files/0/0_0.jpeg").status_code == 200
    assert client.get(job["tiles_url"]).status_code == 200


@pytest.fixture(scope="module")
def laser_scan() -> tuple[np.ndarray, list[np.ndarray]]:
    """Four video-rate frames of real tissue: 2x binned, odd lines shifted, shot noise."""
    truth = hematoxylin_image()
    frames = [np.clip(np.rint(scan(truth, LINE_SHIFT, seed) * 255), 0, 255) for seed in range(4)]
    return truth, [f.astype(np.uint8) for f in frames]


@pytest.fixture(scope="module")
def laser_job(client: httpx.Client, laser_scan: tuple[np.ndarray, list[np.ndarray]]) -> dict:
    response = post_sequence(client, "frames.tif", tiff_of(laser_scan[1]), LASER)
    assert response.status_code == 201, response.text
    assert response.json()["channels"] == 1 and response.json()["frame_interval_s"] == 1 / 15
    created = client.post("/v1/jobs", json={"sequence_id": response.json()["id"]})
    assert created.status_code == 202, created.text
    return wait_for_job(client, created.json()["id"], timeout_s=300)


def test_laser_scan_frames_are_corrected_and_beat_bilinear(
    server: Server, laser_job: dict, laser_scan: tuple[np.ndarray, list[np.ndarray]]
) -> None:
    assert laser_job["state"] == "completed", laser_job["error"]
    assert laser_job["frames_total"] == 4 and laser_job["params"]["models"] == ["sr-x2"]
    found = laser_job["metrics"]["frames"]["line_shift_px"]
    assert found == pytest.approx(LINE_SHIFT, abs=0.25)
    node = zarr_nodes(server, laser_job["output_url"])[0]
    axes = [axis["name"] for axis in node.metadata["axes"]]
    assert axes == ["t", "c", "y", "x"]
    level_0 = np.asarray(node.data[0])
    truth, frames = laser_scan
    assert level_0.shape == (4, 1, *truth.shape)
    for t, frame in enumerate(frames):
        output = level_0[t, 0] / 255.0
        bilinear = resize(frame / 255.0, truth.shape, order=1)
        scores = {
            name: (
                peak_signal_noise_ratio(truth, image, data_range=1.0),
                structural_similarity(truth, image, data_range=1.0),
            )
            for name, image in (("output", output), ("bilinear", bilinear))
        }
        print(
            f"frame {t}: " + ", ".join(f"{k} {p:.2f} dB / {s:.3f}" for k, (p, s) in scores.items())
        )
        assert scores["output"][0] > scores["bilinear"][0]
        assert scores["output"][1] > scores["bilinear"][1]


def test_laser_scan_frames_are_served_one_by_one(client: httpx.Client, laser_job: dict) -> None:
    table = client.get(laser_job["frames_url"])
    assert table.status_code == 200 and len(table.text.strip().splitlines()) == 5
    base = f"/v1/jobs/{laser_job['id']}"
    assert client.get(f"{base}/frames/3/output.dzi").status_code == 200
    assert client.get(f"{base}/frames/3/output_files/0/0_0.jpeg").status_code == 200
    assert client.get(f"{base}/frames/4/output.dzi").status_code == 404
    sequence = f"/v1/sequences/{laser_job['sequence_id']}"
    assert client.get(f"{sequence}/frames/3/image_files/0/0_0.jpeg").status_code == 200


def test_the_viewer_steps_through_frames(server: Server, laser_job: dict) -> None:
    errors: list[str] = []
    with chromium_page(errors, server.key) as page:
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(f"{server.url}{laser_job['viewer_url']}")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        assert page.locator("#frame-controls").is_visible()
        with page.expect_request(lambda r: "/frames/2/output_files/" in r.url, timeout=20_000):
            page.locator("#frame").fill("2")
        page.wait_for_selector("body[data-frame='2']", timeout=10_000)
        page.wait_for_load_state("networkidle")
        label = page.locator("#frame-label").inner_text()
    assert not errors, errors
    assert label == "frame 3 / 4"
    assert any(f"/sequences/{laser_job['sequence_id']}/frames/2/" in url for url in requested)


def _different_sizes() -> bytes:
    frames = [np.zeros((64, 64, 3), np.uint8), np.zeros((64, 80, 3), np.uint8)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, frame in enumerate(frames):
            png = io.BytesIO()
            _png(frame, png)
            archive.writestr(f"f{index}.png", png.getvalue())
    return buffer.getvalue()


def _escaping_zip() -> bytes:
    buffer = io.BytesIO()
    png = io.BytesIO()
    _png(np.zeros((64, 64, 3), np.uint8), png)
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../evil.png", png.getvalue())
    return buffer.getvalue()


def _missing(field: str) -> dict:
    return {k: v for k, v in CONTINUOUS.items() if k != field}


BAD_UPLOADS = [
    ("no metadata", "scan.zip", None, None, 422, "metadata"),
    ("metadata not JSON", "scan.zip", None, "{mode: ", 422, "metadata"),
    ("speed missing", "scan.zip", None, _missing("stage_speed_um_s"), 422, "stage_speed_um_s"),
    ("exposure longer than a frame", "scan.zip", None, {**CONTINUOUS, "exposure_s": 1.0}, 422,
     "exposure_s"),
    ("laser field on a stage scan", "scan.zip", None, {**CONTINUOUS, "bidirectional": True},
     422, "bidirectional"),
    ("unknown mode", "scan.zip", None, {**CONTINUOUS, "mode": "spinning"}, 422, "mode"),
    ("rows do not match the frames", "scan.zip", None,
     {**CONTINUOUS, "layout": {**CONTINUOUS["layout"], "rows": 2}}, 422, "15 frames"),
    ("frames of different sizes", "sizes.zip", _different_sizes(), LASER, 422, "64"),
    ("entry escaping its folder", "evil.zip", _escaping_zip(), LASER, 422, "../evil.png"),
    ("truncated video", "cut.mp4", "cut-mp4", LASER, 422, "decode"),
    ("not frames at all", "noise.bin", bytes(range(256)) * 64, LASER, 415, "zip"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "name", "content", "metadata", "status", "says"),
    BAD_UPLOADS,
    ids=[case[0] for case in BAD_UPLOADS],
)
def test_bad_sequences_get_a_clear_4xx_and_leave_nothing(
    client: httpx.Client,
    server: Server,
    simulated: Scan,
    case: str,
    name: str,
    content: bytes | str | None,
    metadata: dict | str | None,
    status: int,
    says: str,
) -> None:
    if content is None:
        content = zip_of(simulated.frames)
    elif content == "cut-mp4":
        whole = mp4_of(simulated.frames)
        content = whole[: len(whole) // 2]
    before = set((Path(server.env["RESTORE_DATA_DIR"]) / "sequences").iterdir())
    response = post_sequence(client, name, content, metadata)
    assert response.status_code == status, (case, response.text)
    assert says in response.json()["message"], (case, response.json()["message"])
    assert "/" + "tmp" not in response.json()["message"]  # no server paths
    after = set((Path(server.env["RESTORE_DATA_DIR"]) / "sequences").iterdir())
    assert after == before, case


def test_bad_sequence_jobs_get_422(
    client: httpx.Client, uploads: dict[str, dict], laser_job: dict
) -> None:
    sequence_id = uploads["zip"]["id"]
    cases = [
        ({"sequence_id": sequence_id, "slide_id": "x"}, "either slide_id or sequence_id"),
        ({}, "either slide_id or sequence_id"),
        ({"sequence_id": sequence_id, "region": [0, 0, 10, 10]}, "region"),
        ({"sequence_id": laser_job["sequence_id"], "hooks": ["nuclei-count"]}, "laser-scan"),
        ({"sequence_id": sequence_id, "model": ["auto", "sr-x2"]}, "auto"),
    ]
    for body, says in cases:
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 422, (body, response.text)
        assert says in response.json()["message"], (body, response.json()["message"])
    assert client.post("/v1/jobs", json={"sequence_id": "nope"}).status_code == 404


def test_a_laser_scan_job_can_be_cancelled_midway(
    client: httpx.Client, server: Server, laser_scan: tuple[np.ndarray, list[np.ndarray]]
) -> None:
    frames = laser_scan[1] * 40  # 160 frames: ten tasks of 16
    response = post_sequence(client, "long.tif", tiff_of(frames), LASER)
    assert response.status_code == 201, response.text
    job = client.post("/v1/jobs", json={"sequence_id": response.json()["id"]}).json()
    deadline = time.time() + 120
    while client.get(f"/v1/jobs/{job['id']}").json()["progress"]["tiles_done"] < 1:
        assert time.time() < deadline
        time.sleep(0.2)
    cancelled = client.delete(f"/v1/jobs/{job['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    time.sleep(3)  # the running task stops before its next frame
    final = client.get(f"/v1/jobs/{job['id']}").json()
    assert final["state"] == "cancelled" and final["progress"]["tiles_done"] < len(frames)
    folder = Path(server.env["RESTORE_DATA_DIR"]) / "jobs" / job["id"]
    assert not (folder / "output.partial.zarr").exists() and not (folder / "output.zarr").exists()
