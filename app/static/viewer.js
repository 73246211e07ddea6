// Input and output of a job side by side, panned and zoomed together.
"use strict";

const statusLine = document.getElementById("status");

async function getJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

function makeViewer(id) {
  return OpenSeadragon({
    id, showNavigationControl: false, showNavigator: false,
    animationTime: 0.3, maxZoomPixelRatio: 4, crossOriginPolicy: "Anonymous",
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

async function showJob(jobId) {
  const job = await getJson(`/v1/jobs/${jobId}`);
  const source = job.slide_id
    ? await getJson(`/v1/slides/${job.slide_id}`)
    : await getJson(`/v1/sequences/${job.sequence_id}`);
  statusLine.textContent = `${source.filename} · ${[].concat(job.model).join(" + ")} · ${job.state}`;
  if (job.state !== "completed") {
    statusLine.textContent += ` (${Math.round(job.progress.fraction * 100)} %)`;
    setTimeout(() => showJob(jobId), 2000);
    return;
  }
  document.getElementById("panes").hidden = false;
  const [x, y, w] = job.params.area;
  const inputWidth = job.slide_id ? source.width : w;
  const input = makeViewer("input");
  const output = makeViewer("output");
  input.addTiledImage({ tileSource: job.input_dzi_url, x: -x / w, y: -y / w, width: inputWidth / w });
  output.addTiledImage({ tileSource: job.dzi_url, x: 0, y: 0, width: 1 });
  document.getElementById("output-label").textContent = `output (${job.model})`;
  let opened = 0;
  let loaded = 0;
  const drawn = (event) => {
    if (event.fullyLoaded && ++loaded === 2) document.body.dataset.ready = "true";
  };
  const ready = (event) => {
    event.item.addOnceHandler("fully-loaded-change", drawn);
    if (++opened === 2) {
      output.viewport.goHome(true);
      input.viewport.fitBounds(output.viewport.getBounds(), true);
      synchronise(input, output);
      if (job.blur_map_url) showBlurMap(output, job);
      if (job.frames_total) showFrameSlider(input, output, job);
    }
  };
  input.world.addOnceHandler("add-item", ready);
  output.world.addOnceHandler("add-item", ready);
  window.viewers = { input, output };
}

// A laser-scan job's output has a time axis: step both panes through its frames.
function showFrameSlider(input, output, job) {
  const slider = document.getElementById("frame");
  const label = document.getElementById("frame-label");
  slider.max = String(job.frames_total - 1);
  const show = (t) => {
    label.textContent = `frame ${t + 1} / ${job.frames_total}`;
    document.body.dataset.frame = String(t);
    for (const [viewer, url] of [
      [input, `/v1/sequences/${job.sequence_id}/frames/${t}/image.dzi`],
      [output, `/v1/jobs/${job.id}/frames/${t}/output.dzi`],
    ]) {
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

function showBlurMap(viewer, job) {
  const qc = job.metrics && job.metrics.qc;
  if (!qc) return;
  const [, , areaWidth] = job.params.area;
  const columns = Math.ceil(areaWidth / qc.cell_px);
  const toggle = document.getElementById("blur-toggle");
  viewer.addSimpleImage({
    url: job.blur_map_url, x: 0, y: 0, width: (columns * qc.cell_px) / areaWidth,
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

async function listJobs() {
  const jobs = await getJson("/v1/jobs");
  const rows = jobs.map((j) => `<tr><td><a href="/?job=${j.id}">${j.id.slice(0, 8)}</a></td>` +
    `<td>${[].concat(j.model).join(" + ")}</td><td>${j.state}</td><td>${Math.round(j.progress.fraction * 100)} %</td></tr>`);
  document.getElementById("jobs").innerHTML =
    `<table><tr><th>job</th><th>model</th><th>state</th><th>progress</th></tr>${rows.join("")}</table>`;
  statusLine.textContent = `${jobs.length} job(s)`;
  document.body.dataset.ready = "true";
}

const jobId = new URLSearchParams(location.search).get("job");
(jobId ? showJob(jobId) : listJobs()).catch((error) => {
  statusLine.textContent = `error: ${error.message}`;
});
