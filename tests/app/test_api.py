"""The REST API through HTTP against the real server command (embedded worker)."""

import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import openslide
import pytest
import tifffile
from PIL import Image

from tests.app.server import Server, start_slow_job, upload, wait_for_job, zarr_nodes
from tests.engine.fakes import whole_image_blur
from tests.engine.test_readers import huge_declared_tiff
from tests.fixtures import tissue_image

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def read_output(server: Server, job: dict) -> list[np.ndarray]:
    """Open the job's OME-Zarr by URL with ome-zarr-py, as napari would."""
    node = zarr_nodes(server, job["output_url"])[0]
    return [np.moveaxis(np.asarray(level), 0, 2) for level in node.data]


def openslide_pixels(path: Path, box=None) -> np.ndarray:
    with openslide.OpenSlide(str(path)) as slide:
        x, y, w, h = box or (0, 0, *slide.dimensions)
        return np.asarray(slide.read_region((x, y), 0, (w, h)).convert("RGB"))


@pytest.fixture(scope="module")
def slide(embedded: Server, pyramid_tiff: Path) -> dict:
    with embedded.client(timeout=60) as client:
        response = upload(client, pyramid_tiff)
    assert response.status_code == 201, response.text
    return response.json()


def test_health_reports_broker_and_worker(client: httpx.Client) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["broker"]
    assert body["workers"][0]["provider"] == "CPUExecutionProvider"


def test_upload_describes_the_slide(client: httpx.Client, slide: dict, pyramid_tiff: Path) -> None:
    import hashlib

    assert slide["sha256"] == hashlib.sha256(pyramid_tiff.read_bytes()).hexdigest()
    assert (slide["width"], slide["height"], slide["level_count"]) == (1500, 1200, 3)
    assert slide["mpp_x"] == pytest.approx(0.5) and slide["vendor"] == "generic-tiff"
    assert client.get(f"/v1/slides/{slide['id']}").json() == slide
    thumb = client.get(slide["thumbnail_url"])
    assert thumb.headers["content-type"] == "image/png"
    small = client.get(slide["thumbnail_url"], params={"max_px": 100})
    assert max(Image.open(__import__("io").BytesIO(small.content)).size) == 100


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (
            lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt",
            415,
            "unsupported_format",
        ),
        (lambda d: huge_declared_tiff(d / "huge.tif"), 413, "too_large"),
        (
            lambda d: (d / "empty.svs").write_bytes(b"") is not None and d / "empty.svs",
            422,
            "invalid_input",
        ),
    ],
)
def test_bad_uploads_get_a_clear_4xx_and_leave_nothing(
    client, embedded, tmp_path, make, status, code
) -> None:
    slides_dir = Path(embedded.env["RESTORE_DATA_DIR"]) / "slides"
    before = set(slides_dir.iterdir())
    response = upload(client, make(tmp_path))
    assert response.status_code == status, response.text
    assert response.json()["code"] == code and response.json()["message"]
    assert set(slides_dir.iterdir()) == before


def test_truncated_slide_is_refused(client, tmp_path: Path, pyramid_tiff: Path) -> None:
    data = pyramid_tiff.read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    response = upload(client, tmp_path / "cut.tif")
    assert response.status_code == 422 and "truncated" in response.json()["message"]


def test_upload_without_file_field(client: httpx.Client) -> None:
    response = client.post("/v1/slides", files={"other": ("x.png", b"123")})
    assert response.status_code == 422 and "'file'" in response.json()["message"]


def test_huge_thumbnail_request_is_refused(client: httpx.Client, slide: dict) -> None:
    response = client.get(slide["thumbnail_url"], params={"max_px": 40000})
    assert response.status_code == 413


def test_models_are_listed(client: httpx.Client) -> None:
    models = {m["name"]: m for m in client.get("/v1/models").json()}
    assert {"identity", "blur3x3", "nearest-x2"} <= set(models)
    assert models["identity"]["min_size_px"] == 1
    for name in {"deblur-motion", "deblur-defocus"} & set(models):
        assert models[name]["min_size_px"] == 64


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"model": "deblur-nothing"}, 422, "not installed"),
        ({"model": "identity", "region": [1000, 1000, 900, 10]}, 422, "outside the slide"),
        ({"model": "identity", "tile_px": 100, "overlap_px": 16}, 422, "overlap_px"),
        ({"model": "identity", "tile_px": 8}, 422, "tile_px"),
        ({"model": "identity", "hooks": ["cell-counter-9000"]}, 422, "not installed"),
        ({"model": "identity", "webhook_url": "http://lims/"}, 422, "webhook_url: unknown field"),
        ({"model": "identity", "min_confidence": 2}, 422, "min_confidence: Input should be"),
    ],
)
def test_bad_job_requests(client: httpx.Client, slide: dict, body, status, text) -> None:
    response = client.post("/v1/jobs", json={"slide_id": slide["id"], **body})
    assert response.status_code == status and text in response.json()["message"]


def test_unknown_ids_are_404(client: httpx.Client) -> None:
    assert client.get("/v1/jobs/nope").status_code == 404
    assert (
        client.post("/v1/jobs", json={"slide_id": "nope", "model": "identity"}).status_code == 404
    )


def test_identity_job_output_equals_input_exactly(
    embedded: Server, client, slide, pyramid_tiff: Path
) -> None:
    created = client.post("/v1/jobs", json={"slide_id": slide["id"], "model": "identity"})
    assert created.status_code == 202
    job = wait_for_job(client, created.json()["id"])
    assert job["state"] == "completed", job["error"]
    assert job["progress"]["tiles_done"] == job["progress"]["tiles_total"] > 0
    assert job["provider"] == "CPUExecutionProvider" and len(job["model_sha256"]) == 64
    assert {"plan_s", "regions_s", "finalize_s"} <= set(job["timings"])
    levels = read_output(embedded, job)
    assert np.array_equal(levels[0], openslide_pixels(pyramid_tiff))
    assert [lvl.shape[:2] for lvl in levels] == [(1200, 1500), (600, 750), (300, 375), (150, 188)]
    attrs = client.get(job["output_url"] + "/.zattrs").json()
    assert attrs["restoration"]["provider"] == "CPUExecutionProvider"
    assert attrs["restoration"]["model_sha256"] == job["model_sha256"]
    cors = client.get(job["output_url"] + "/.zattrs", headers={"Origin": "http://viewer.lan"})
    assert cors.headers["access-control-allow-origin"] == "http://viewer.lan"  # configured
    foreign = client.get(job["output_url"] + "/.zattrs", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in foreign.headers  # no wildcard by default
    preflight = client.options(
        f"/v1/jobs/{job['id']}",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "DELETE"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_output_as_pyramidal_ome_tiff_opens_in_tifffile_and_openslide(
    embedded: Server, client, slide, pyramid_tiff: Path, tmp_path: Path
) -> None:
    import tifffile

    job = wait_for_job(
        client,
        client.post("/v1/jobs", json={"slide_id": slide["id"], "model": "identity"}).json()["id"],
    )
    url = f"/v1/jobs/{job['id']}/output.ome.tiff"
    first = client.get(url)
    assert first.status_code == 202 and first.headers["retry-after"]
    deadline = time.time() + 60
    response = first
    while response.status_code == 202 and time.time() < deadline:
        time.sleep(0.5)
        response = client.get(url)
    assert response.status_code == 200 and response.headers["content-type"] == "image/tiff"
    path = tmp_path / "out.ome.tiff"
    path.write_bytes(response.content)
    sizes = [(1200, 1500), (600, 750), (300, 375), (150, 188)]
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        assert [level.shape[:2] for level in tif.series[0].levels] == sizes
        pixels = tif.series[0].levels[0].asarray()
        assert 'PhysicalSizeX="0.5"' in tif.ome_metadata
    assert np.abs(pixels.astype(float) - openslide_pixels(pyramid_tiff)).mean() < 3  # JPEG 90
    with openslide.OpenSlide(str(path)) as opened:
        assert [d[::-1] for d in opened.level_dimensions] == sizes
        assert float(opened.properties["openslide.mpp-x"]) == pytest.approx(0.5)


def test_convolution_job_equals_whole_image_convolution(
    embedded: Server, client, slide, pyramid_tiff: Path
) -> None:
    body = {
        "slide_id": slide["id"],
        "model": "blur3x3",
        "skip_background": False,
        "tile_px": 192,
    }
    job = wait_for_job(client, client.post("/v1/jobs", json=body).json()["id"])
    assert job["state"] == "completed", job["error"]
    out = read_output(embedded, job)[0].astype(float)
    reference = whole_image_blur(openslide_pixels(pyramid_tiff))
    assert np.abs(out - reference)[1:-1, 1:-1].max() <= 1


def test_identity_job_with_the_nuclei_hook_over_http(
    embedded: Server, client, tmp_path: Path
) -> None:
    from tests.engine.test_nuclei import he_image
    from tests.fixtures import write_pyramid_tiff

    listed = {h["name"]: h for h in client.get("/v1/hooks").json()}
    assert "before" in listed["nuclei-count"]["result_schema"]["properties"]
    centres = [(x + 0.0, y + 0.0) for y in range(40, 600, 64) for x in range(40, 800, 64)]
    path = write_pyramid_tiff(tmp_path / "he.tif", he_image(600, 800, centres), mpp=0.25)
    slide = upload(client, path).json()
    body = {"slide_id": slide["id"], "model": "identity", "hooks": ["nuclei-count"]}
    created = client.post("/v1/jobs", json=body).json()
    assert created["hooks"]["nuclei-count"]["state"] == "pending"
    job = wait_for_job(client, created["id"])
    hook = job["hooks"]["nuclei-count"]
    assert hook["state"] == "completed", hook["error"]
    assert hook["result"]["before"]["count"] == hook["result"]["after"]["count"] == len(centres)
    points = client.get(hook["centroids_url"])
    assert points.headers["content-type"] == "application/geo+json"
    assert len(points.json()["features"]) == len(centres)
    assert "nuclei_after" in client.get(job["tiles_url"]).text.splitlines()[0]


def test_region_and_x2_model(embedded: Server, client, slide, pyramid_tiff: Path) -> None:
    body = {
        "slide_id": slide["id"],
        "model": "nearest-x2",
        "region": [300, 200, 700, 500],
        "skip_background": False,
    }
    job = wait_for_job(client, client.post("/v1/jobs", json=body).json()["id"])
    assert job["state"] == "completed", job["error"]
    out = read_output(embedded, job)[0]
    crop = openslide_pixels(pyramid_tiff, (300, 200, 700, 500))
    assert np.array_equal(out, crop.repeat(2, axis=0).repeat(2, axis=1))
    attrs = client.get(job["output_url"] + "/.zattrs").json()
    scale = attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == pytest.approx([1.0, 0.25, 0.25])


def test_dzi_of_input_and_output(client: httpx.Client, slide: dict) -> None:
    job = client.get("/v1/jobs").json()
    done = next(j for j in job if j["state"] == "completed")
    assert 'Width="' in client.get(done["dzi_url"]).text
    for url in (
        done["dzi_url"].replace(".dzi", "_files/11/1_1.jpeg"),
        slide["dzi_url"].replace(".dzi", "_files/11/1_1.jpeg"),
        slide["dzi_url"].replace(".dzi", "_files/3/0_0.jpeg"),
    ):
        response = client.get(url)
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert client.get(slide["dzi_url"].replace(".dzi", "_files/11/99_99.jpeg")).status_code == 404


def test_cancel_stops_a_running_job(client: httpx.Client, slide: dict, embedded: Server) -> None:
    job = start_slow_job(client, slide["id"])
    cancelled = client.delete(f"/v1/jobs/{job['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 409
    assert client.get(f"/v1/jobs/{job['id']}/output.dzi").status_code == 409
    import time

    time.sleep(3)
    after = client.get(f"/v1/jobs/{job['id']}").json()
    assert after["state"] == "cancelled"
    assert after["progress"]["regions_done"] < after["progress"]["regions_total"]
    job_dir = Path(embedded.env["RESTORE_DATA_DIR"]) / "jobs" / job["id"]
    assert not (job_dir / "output.zarr").exists()
    assert not (job_dir / "output.partial.zarr").exists()


def test_real_svs_slide(embedded: Server, client: httpx.Client, small_svs: Path) -> None:
    slide = upload(client, small_svs).json()
    assert slide["vendor"] == "aperio" and slide["mpp_x"] == pytest.approx(0.499)
    body = {"slide_id": slide["id"], "model": "identity", "region": [500, 700, 1100, 900]}
    job = wait_for_job(client, client.post("/v1/jobs", json=body).json()["id"])
    assert job["state"] == "completed", job["error"]
    assert np.array_equal(
        read_output(embedded, job)[0], openslide_pixels(small_svs, (500, 700, 1100, 900))
    )


def _png(d: Path) -> Path:
    Image.fromarray(tissue_image(300, 400)).save(d / "field.png")
    return d / "field.png"


def _jpeg(d: Path) -> Path:
    Image.fromarray(tissue_image(300, 400)).save(d / "field.jpg", quality=90)
    return d / "field.jpg"


def _ome_tiff(d: Path) -> Path:
    tifffile.imwrite(
        d / "x.ome.tif",
        tissue_image(300, 400),
        ome=True,
        photometric="rgb",
        tile=(128, 128),
        metadata={"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25},
    )
    return d / "x.ome.tif"


def _zip(d: Path, pyramid_tiff: Path) -> Path:
    with zipfile.ZipFile(d / "case.zip", "w") as bundle:
        bundle.write(pyramid_tiff, "case/slide.tif")
    return d / "case.zip"


@pytest.mark.parametrize(
    ("make", "reader", "size"),
    [
        (_png, "pillow", (400, 300)),
        (_jpeg, "pillow", (400, 300)),
        (_ome_tiff, "tifffile", (400, 300)),
        (_zip, "openslide", (1500, 1200)),
    ],
)
def test_other_formats_upload_and_restore(
    client, tmp_path, pyramid_tiff, make, reader, size
) -> None:
    path = make(tmp_path, pyramid_tiff) if make is _zip else make(tmp_path)
    response = upload(client, path)
    assert response.status_code == 201, response.text
    slide = response.json()
    assert slide["reader"] == reader and (slide["width"], slide["height"]) == size
    job = client.post("/v1/jobs", json={"slide_id": slide["id"], "model": "identity"}).json()
    assert wait_for_job(client, job["id"])["state"] == "completed"


def test_upload_named_like_the_thumbnail_keeps_the_original(client, tmp_path: Path) -> None:
    image = tissue_image(1100, 1300)  # larger than the 1024-px thumbnail
    Image.fromarray(image).save(tmp_path / "field.png")
    slide = upload(client, tmp_path / "field.png", name="thumbnail.png").json()
    assert (slide["width"], slide["height"]) == (1300, 1100)
    job = client.post("/v1/jobs", json={"slide_id": slide["id"], "model": "identity"}).json()
    done = wait_for_job(client, job["id"])
    assert done["state"] == "completed", done["error"]


def test_progress_of_a_one_region_job_moves_before_the_region_ends(client, slide) -> None:
    body = {
        "slide_id": slide["id"],
        "model": "blur3x3",
        "region": [0, 0, 512, 512],
        "tile_px": 32,
        "skip_background": False,
    }
    job = client.post("/v1/jobs", json=body).json()
    seen = []
    deadline = time.time() + 120
    while time.time() < deadline:
        current = client.get(f"/v1/jobs/{job['id']}").json()
        progress = current["progress"]
        seen.append((progress["tiles_done"], progress["regions_done"], current["eta_s"]))
        if current["state"] in ("completed", "failed"):
            break
        time.sleep(0.05)
    assert current["state"] == "completed" and progress["regions_total"] == 1
    midway = [(t, eta) for t, regions, eta in seen if regions == 0 and 0 < t < 256]
    assert midway, seen[-5:]  # tiles counted while the only region was still running
    assert all(eta is not None and eta >= 0 for _, eta in midway)
