// The start page: the recent jobs, and a form that starts one on an uploaded slide.
"use strict";

async function showHome() {
  document.getElementById("home").hidden = false;
  setUpKeyForm();
  const [jobs, slides, sequences, models] = await Promise.all(
    ["/v1/jobs", "/v1/slides", "/v1/sequences", "/v1/models"].map(getJson),
  );
  listJobs(jobs, [...slides, ...sequences]);
  fillStartForm(slides, models);
  statusLine.textContent = `${jobs.length} job(s)`;
  document.body.dataset.ready = "true";
}

// A table row of text cells (file names come from users: never parsed as HTML).
function row(tag, cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement(tag);
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell;
    tr.append(td);
  }
  return tr;
}

function listJobs(jobs, inputs) {
  const names = new Map(inputs.map((input) => [input.id, input.filename]));
  const inputName = (job) => {
    const id = job.slide_id || job.sequence_id;
    const gone = !job.input_dzi_url && (job.slide_id || job.state === "completed");
    if (gone) return "(deleted)";
    return names.get(id) || id.slice(0, 8);
  };
  const table = document.createElement("table");
  table.append(row("th", ["job", "input", "model", "state", "progress", "created"]));
  for (const job of jobs) {
    const link = document.createElement("a");
    link.href = job.viewer_url;
    link.textContent = job.id.slice(0, 8);
    table.append(row("td", [
      link, inputName(job), [].concat(job.model).join(" + "), job.state,
      `${Math.round(job.progress.fraction * 100)} %`,
      new Date(job.created_at * 1000).toLocaleString(),
    ]));
  }
  const list = document.getElementById("jobs");
  list.replaceChildren(jobs.length ? table : "No jobs yet: start one with the form.");
}

function option(value, text) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text;
  return element;
}

function fillStartForm(slides, models) {
  const slideSelect = document.getElementById("start-slide");
  for (const slide of slides) {
    const mpp = slide.mpp_x ? `, ${slide.mpp_x} \u00b5m/px` : "";
    slideSelect.append(option(slide.id, `${slide.filename} (${slide.width} \u00d7 ${slide.height}${mpp})`));
  }
  if (!slides.length) {
    slideSelect.append(option("", "no slides yet: upload one with POST /v1/slides"));
    document.getElementById("start-button").disabled = true;
  }
  const modelSelect = document.getElementById("start-model");
  for (const model of models.filter((m) => m.kind === "generator")) {
    const scale = model.scale > 1 ? `, \u00d7${model.scale}` : "";
    modelSelect.append(option(model.name, `${model.name} (${model.task}${scale})`));
  }
  document.getElementById("start-form").addEventListener("submit", startJob);
}

// [x, y, width, height] from the form, null for the whole slide; throws if half given.
function formRegion() {
  const values = [...document.querySelectorAll("#start-region input")].map((i) => i.value.trim());
  if (values.every((value) => value === "")) return null;
  if (values.some((value) => value === "")) {
    throw new Error("give all four region values (x, y, width, height), or none for the whole slide");
  }
  return values.map(Number);
}

async function startJob(event) {
  event.preventDefault();
  const message = document.getElementById("start-message");
  const button = document.getElementById("start-button");
  message.className = "";
  button.disabled = true;
  try {
    const body = {
      slide_id: document.getElementById("start-slide").value,
      model: document.getElementById("start-model").value,
    };
    const region = formRegion();
    if (region) body.region = region;
    message.textContent = "starting\u2026";
    const response = await apiFetch("/v1/jobs", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(`${answer.message} (${answer.code})`);
    message.textContent = `job ${answer.id.slice(0, 8)} started`;
    location.assign(answer.viewer_url);
  } catch (error) {
    message.textContent = error.message;
    message.className = "error";
  } finally {
    button.disabled = false;
  }
}
