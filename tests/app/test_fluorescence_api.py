"""Multi-channel fluorescence through HTTP: channels kept, named, windowed, coloured, restored."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tifffile
from PIL import Image
from skimage import color, data
from skimage.transform import resize

from tests.app.browser import chromium_page
from tests.app.server import Server, wait_for_job, zarr_nodes
from workers.settings import ZOO_DIR

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NAMES = ["DAPI", "FITC", "TRITC"]
QPI = (
    '<?xml version="1.0" encoding="utf-8"?>\r\n<PerkinElmer-QPI-ImageDescription>'
    "<ImageType>FullResolution</ImageType><Name>{name}</Name><Color>{color}</Color>"
    "</PerkinElmer-QPI-ImageDescription>"
)


def stains(height: int = 768, width: int = 1024) -> np.ndarray:
    """Three channels of real tissue as dim 16-bit fluorescence (signal on a dark
    background, at most about 900 of 65535): the IHC sample's hematoxylin and DAB
    densities, and its overall darkness."""
    rgb = np.pad(data.immunohistochemistry(), ((0, 256), (0, 512), (0, 0)), "symmetric")
    rgb = rgb[:height, :width]
    hed = color.rgb2hed(rgb)
    planes = [hed[..., 0], hed[..., 2], 1 - color.rgb2gray(rgb)]
    scaled = [(p - p.min()) / max(np.percentile(p, 99.9) - p.min(), 1e-6) for p in planes]
    return np.stack([np.clip(p, 0, 1) * 900 + 20 for p in scaled]).astype(np.uint16)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("fluorescence-api")
    env = {"RESTORE_DATA_DIR": str(data_dir / "var"), "RESTORE_MODELS_DIRS": f'["{ZOO_DIR}"]'}
    server = Server(env, data_dir / "server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client(timeout=120) as client:
        yield client


def upload(client: httpx.Client, name: str, content: bytes) -> httpx.Response:
    return client.post("/v1/slides", files={"file": (name, content)})


@pytest.fixture(scope="module")
def slide(client: httpx.Client) -> dict:
    buffer = io.BytesIO()
    metadata = {"axes": "CYX", "Channel": {"Name": NAMES}}
    tifffile.imwrite(buffer, stains(), ome=True, photometric="minisblack", metadata=metadata)
    response = upload(client, "stains.ome.tif", buffer.getvalue())
    assert response.status_code == 201, response.text
    return response.json()


def test_channels_keep_their_names_and_windows(client: httpx.Client, slide: dict) -> None:
    assert slide["vendor"] == "ome-tiff"
    assert [c["name"] for c in slide["channels"]] == NAMES
    assert all(800 < c["window"][1] <= 920 and c["window"][0] < 100 for c in slide["channels"])
    thumbnail = np.asarray(Image.open(io.BytesIO(client.get(slide["thumbnail_url"]).content)))
    assert thumbnail.mean() > 40  # not near black, as raw 16-bit values shown as RGB were
    assert np.ptp(thumbnail.reshape(-1, 3).mean(axis=0)) > 5  # false colour, not grey


def test_a_qptiff_says_so_and_keeps_its_channel_names(client: httpx.Client) -> None:
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as tif:
        colours = ("0,0,255", "0,255,0", "255,0,0")
        for plane, name, rgb in zip(stains(256, 320), NAMES, colours, strict=True):
            description = QPI.format(name=name, color=rgb)
            tif.write(plane, description=description, software="PerkinElmer-QPI", metadata=None)
    slide = upload(client, "vectra.qptiff", buffer.getvalue()).json()
    assert slide["vendor"] == "qptiff"
    assert [(c["name"], c["color"]) for c in slide["channels"]] == list(
        zip(NAMES, ("0000FF", "00FF00", "FF0000"), strict=True)
    )


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"model": "deblur-defocus"}, "lowers the quality of fluorescence"),
        ({"model": "sr-x4"}, "restores RGB images"),
        ({}, "'auto' routes to RGB"),
        ({"model": "sr-x2", "hooks": ["nuclei-count"]}, "hooks work on RGB slides"),
    ],
)
def test_models_that_do_not_suit_fluorescence_are_refused(
    client: httpx.Client, slide: dict, body: dict, says: str
) -> None:
    response = client.post("/v1/jobs", json={"slide_id": slide["id"], **body})
    assert response.status_code == 422 and says in response.json()["message"], response.text


@pytest.fixture(scope="module")
def restored(client: httpx.Client, slide: dict) -> dict:
    created = client.post("/v1/jobs", json={"slide_id": slide["id"], "model": "sr-x2"})
    assert created.status_code == 202, created.text
    job = wait_for_job(client, created.json()["id"], timeout_s=600)
    assert job["state"] == "completed", job["error"]
    return job


def test_its_report_and_exports_say_what_they_hold(client: httpx.Client, restored: dict) -> None:
    assert client.get(restored["report_url"]).status_code == 200
    assert client.get(restored["tiles_url"]).status_code == 200
    refused = client.get(f"/v1/jobs/{restored['id']}/output.ome.tiff")
    assert refused.status_code == 409 and "OME-Zarr" in refused.json()["message"]


def test_each_channel_is_restored_on_its_own(server: Server, restored: dict) -> None:
    node = zarr_nodes(server, restored["output_url"])[0]
    labels = [
        c["label"]
        for c in node.metadata["channel_names"] and node.zarr.root_attrs["omero"]["channels"]
    ]
    assert labels == NAMES
    windows = [c["window"] for c in node.zarr.root_attrs["omero"]["channels"]]
    assert all(w["end"] > w["start"] for w in windows)
    level_0 = np.asarray(node.data[0])
    assert level_0.shape == (3, 1536, 2048)
    source = stains().astype(np.float64)
    for index in range(3):
        upsampled = resize(source[index], level_0.shape[1:], order=1)
        pcc = np.corrcoef(upsampled.ravel(), level_0[index].ravel())[0, 1]
        print(f"{NAMES[index]}: PCC with the 2x upsampled input channel {pcc:.3f}")
        assert pcc > 0.9  # the channel is itself, not mixed with the others


def test_two_or_four_channels_work_too(client: httpx.Client, server: Server) -> None:
    for count in (2, 4):
        planes = np.concatenate([stains(256, 320)] * 2)[:count]
        buffer = io.BytesIO()
        tifffile.imwrite(
            buffer, planes, ome=True, photometric="minisblack", metadata={"axes": "CYX"}
        )
        slide = upload(client, f"c{count}.ome.tif", buffer.getvalue()).json()
        assert [c["name"] for c in slide["channels"]] == [f"channel {i + 1}" for i in range(count)]
        body = {"slide_id": slide["id"], "model": "sr-x2"}
        job = wait_for_job(client, client.post("/v1/jobs", json=body).json()["id"], timeout_s=300)
        assert job["state"] == "completed", job["error"]
        assert job["blur_map_url"] is None  # no RGB blur classification of channels
        node = zarr_nodes(server, job["output_url"])[0]
        assert np.asarray(node.data[0]).shape == (count, 512, 640)
        assert client.get(job["dzi_url"].replace(".dzi", "_files/9/0_0.jpeg")).status_code == 200


def test_the_viewer_shows_the_channels_in_colour(
    server: Server, restored: dict, tmp_path: Path
) -> None:
    errors: list[str] = []
    with chromium_page(errors, server.key) as page:
        page.goto(f"{server.url}{restored['viewer_url']}")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(tmp_path / "fluorescence.png"))
    assert not errors, errors
    shot = np.asarray(Image.open(tmp_path / "fluorescence.png").convert("RGB"), dtype=float)
    for pane in (shot[120:650, 20:580], shot[120:650, 620:1180]):  # input, output
        assert pane.mean() > 25, pane.mean()
        assert np.ptp(pane.reshape(-1, 3).mean(axis=0)) > 5
