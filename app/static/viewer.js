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
  const slide = await getJson(`/v1/slides/${job.slide_id}`);
  statusLine.textContent = `${slide.filename} · ${job.model} · ${job.state}`;
  if (job.state !== "completed") {
    statusLine.textContent += ` (${Math.round(job.progress.fraction * 100)} %)`;
    setTimeout(() => showJob(jobId), 2000);
    return;
  }
  document.getElementById("panes").hidden = false;
  const [x, y, w] = job.params.area;
  const input = makeViewer("input");
  const output = makeViewer("output");
  input.addTiledImage({
    tileSource: slide.dzi_url, x: -x / w, y: -y / w, width: slide.width / w,
  });
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
    }
  };
  input.world.addOnceHandler("add-item", ready);
  output.world.addOnceHandler("add-item", ready);
  window.viewers = { input, output };
}

async function listJobs() {
  const jobs = await getJson("/v1/jobs");
  const rows = jobs.map((j) => `<tr><td><a href="/?job=${j.id}">${j.id.slice(0, 8)}</a></td>` +
    `<td>${j.model}</td><td>${j.state}</td><td>${Math.round(j.progress.fraction * 100)} %</td></tr>`);
  document.getElementById("jobs").innerHTML =
    `<table><tr><th>job</th><th>model</th><th>state</th><th>progress</th></tr>${rows.join("")}</table>`;
  statusLine.textContent = `${jobs.length} job(s)`;
  document.body.dataset.ready = "true";
}

const jobId = new URLSearchParams(location.search).get("job");
(jobId ? showJob(jobId) : listJobs()).catch((error) => {
  statusLine.textContent = `error: ${error.message}`;
});
