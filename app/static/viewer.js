// Input and output of a job side by side, panned and zoomed together, with scale bars;
// the output alone once the input was deleted. Without ?job=ID: the start page (home.js).
"use strict";

const statusLine = document.getElementById("status");
const ACTIVE_STATES = ["queued", "running", "finalizing"];

async function getJson(url) {
  const response = await apiFetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

function makeViewer(id) {
  return OpenSeadragon({
    id, showNavigationControl: false, showNavigator: false,
    animationTime: 0.3, maxZoomPixelRatio: 4, crossOriginPolicy: "Anonymous",
    loadTilesWithAjax: true, ajaxHeaders: apiHeaders(), // descriptors and tiles need the key
  });
}

// Keep both viewports on the same place; the input is placed so that the job's
// area coincides with the output in viewport coordinates.
function synchronise(a, b) {
  let leader = null;
  const follow = (from, to) => () => {
    if (leader && leader !== from) return;
    leader = from;
    to.viewport.zoomTo(from.viewport.getZoom(), null, true);
    to.viewport.panTo(from.viewport.getCenter(), true);
    leader = null;
  };
  a.addHandler("viewport-change", follow(a, b));
  b.addHandler("viewport-change", follow(b, a));
}

// The output's pixel size in µm, as its OME-Zarr states it (the slide's mpp, or the
// sequence's pixel size, over the models' scale); null where unknown.
async function outputPixelUm(job) {
  const multiscales = (await getJson(`${job.output_url}/.zattrs`)).multiscales[0];
  const axes = multiscales.axes;
  if (axes[axes.length - 1].unit !== "micrometer") return null;
  const scale = multiscales.datasets[0].coordinateTransformations[0].scale;
  return scale[scale.length - 1];
}

// The slide or sequence record, or null once it was deleted (the job then has no input URL).
function inputRecord(job) {
  if (!job.input_dzi_url) return null;
  return getJson(job.slide_id ? `/v1/slides/${job.slide_id}` : `/v1/sequences/${job.sequence_id}`);
}

// A job with nothing to view (yet): its state, progress or error.
function showJobState(job) {
  const models = [].concat(job.model).join(" + ");
  statusLine.textContent = `job ${job.id.slice(0, 8)} · ${models} · ${job.state}`;
  if (ACTIVE_STATES.includes(job.state)) {
    statusLine.textContent += ` (${Math.round(job.progress.fraction * 100)} %)`;
    setTimeout(() => showJob(job.id), 2000);
  } else if (job.error) {
    statusLine.textContent += `: ${job.error}`;
  } else if (job.state === "completed") {
    statusLine.textContent += ": its output files were deleted";
  }
  if (!ACTIVE_STATES.includes(job.state)) document.body.dataset.ready = "true";
}

async function showJob(jobId) {
  const job = await getJson(`/v1/jobs/${jobId}`);
  if (job.state !== "completed" || !job.dzi_url) return showJobState(job);
  const [source, pixelUm] = await Promise.all([inputRecord(job), outputPixelUm(job)]);
  const models = [].concat(job.model).join(" + ");
  statusLine.textContent = `${source ? source.filename : "input deleted"} · ${models} · ${job.state}`;
  document.getElementById("panes").hidden = false;
  if (!source) showOutputAlone(job); // before the viewers measure their panes
  const viewers = { output: makeViewer("output") };
  viewers.output.addTiledImage({ tileSource: job.dzi_url, x: 0, y: 0, width: 1 });
  const [x, y, w] = job.params.area;
  if (source) {
    const inputWidth = job.slide_id ? source.width : w;
    viewers.input = makeViewer("input");
    viewers.input.addTiledImage({
      tileSource: job.input_dzi_url, x: -x / w, y: -y / w, width: inputWidth / w,
    });
  }
  const size = pixelUm ? ` · ${Number(pixelUm.toPrecision(3))} \u00b5m/px` : "";
  document.getElementById("output-label").textContent = `output (${models})${size}`;
  // one viewport unit is the job's area: w input pixels, w × scale output pixels
  const umPerUnit = pixelUm && pixelUm * w * job.params.scale;
  whenOpened(viewers, () => {
    const { input, output } = viewers;
    output.viewport.goHome(true);
    if (input) {
      input.viewport.fitBounds(output.viewport.getBounds(), true);
      synchronise(input, output);
    }
    for (const viewer of Object.values(viewers)) addScaleBar(viewer, umPerUnit);
    if (job.blur_map_url) showBlurMap(output, job).catch((error) => { statusLine.textContent = error.message; });
    if (job.frames_total) showFrameSlider(viewers, job);
  });
  window.viewers = viewers;
}

function showOutputAlone(job) {
  document.getElementById("input-pane").hidden = true;
  document.getElementById("panes").classList.add("output-only");
  const note = document.getElementById("note");
  note.textContent = `the input ${job.slide_id ? "slide" : "sequence"} was deleted: ` +
    "the output alone";
  note.hidden = false;
}

// Call `opened` once every pane has its image; mark the page ready once all are drawn.
function whenOpened(viewers, opened) {
  const panes = Object.values(viewers);
  let added = 0;
  let loaded = 0;
  const drawn = (event) => {
    if (event.fullyLoaded && ++loaded === panes.length) document.body.dataset.ready = "true";
  };
  const ready = (event) => {
    event.item.addOnceHandler("fully-loaded-change", drawn);
    if (++added === panes.length) opened();
  };
  for (const viewer of panes) viewer.world.addOnceHandler("add-item", ready);
}

// A laser-scan job's output has a time axis: step the panes through its frames.
function showFrameSlider(viewers, job) {
  const slider = document.getElementById("frame");
  const label = document.getElementById("frame-label");
  slider.max = String(job.frames_total - 1);
  const show = (t) => {
    label.textContent = `frame ${t + 1} / ${job.frames_total}`;
    document.body.dataset.frame = String(t);
    const frames = [[viewers.output, `/v1/jobs/${job.id}/frames/${t}/output.dzi`]];
    if (viewers.input) {
      frames.push([viewers.input, `/v1/sequences/${job.sequence_id}/frames/${t}/image.dzi`]);
    }
    for (const [viewer, url] of frames) {
      const old = viewer.world.getItemAt(0);
      viewer.addTiledImage({
        tileSource: url, x: 0, y: 0, width: 1,
        success: () => { if (old) viewer.world.removeItem(old); },
      });
    }
  };
  slider.addEventListener("input", () => show(Number(slider.value)));
  label.textContent = `frame 1 / ${job.frames_total}`;
  document.getElementById("frame-controls").hidden = false;
}

// The blur map over the output: one cell per PNG pixel, toggled, with a legend.
const BLUR_CLASSES = [
  ["in_focus", "in focus", "transparent"], ["defocus", "defocus", "rgb(31,119,220)"],
  ["motion", "motion", "rgb(230,120,20)"], ["mixed", "mixed", "rgb(200,40,160)"],
];

async function showBlurMap(viewer, job) {
  const qc = job.metrics && job.metrics.qc;
  if (!qc) return;
  // fetched with the key, then handed to OpenSeadragon as a local URL
  const png = await (await apiFetch(job.blur_map_url)).blob();
  const [, , areaWidth] = job.params.area;
  const columns = Math.ceil(areaWidth / qc.cell_px);
  const toggle = document.getElementById("blur-toggle");
  viewer.addSimpleImage({
    url: URL.createObjectURL(png), x: 0, y: 0, width: (columns * qc.cell_px) / areaWidth,
    opacity: toggle.checked ? 0.6 : 0,
    success: (event) => {
      window.blurOverlay = event.item;
      toggle.addEventListener("change", () => event.item.setOpacity(toggle.checked ? 0.6 : 0));
    },
  });
  document.getElementById("legend").innerHTML = BLUR_CLASSES.map(([key, name, colour]) =>
    `<span><i style="background:${colour}; outline:1px solid #888"></i>` +
    `${name} ${Math.round(qc.share[key] * 100)} %</span>`,
  ).join("") + (qc.rescan_recommended ? "<span>· rescan recommended</span>" : "");
  document.getElementById("blur-controls").hidden = false;
}

const jobId = new URLSearchParams(location.search).get("job");
(jobId ? showJob(jobId) : showHome()).catch((error) => {
  statusLine.textContent = `error: ${error.message}`;
});
