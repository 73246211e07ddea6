// A scale bar on an OpenSeadragon pane: the longest round length that fits in
// MAX_BAR_PX screen pixels, with its label, redrawn whenever the view changes.
"use strict";

const MAX_BAR_PX = 160;
const ROUND_UM = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000];

// The longest round length (µm) at most MAX_BAR_PX long at px_per_um screen pixels per µm.
function roundLengthUm(pxPerUm) {
  const fitting = ROUND_UM.filter((um) => um * pxPerUm <= MAX_BAR_PX);
  return fitting.length ? fitting[fitting.length - 1] : ROUND_UM[0];
}

function lengthLabel(um) {
  return um >= 1000 ? `${um / 1000} mm` : `${um} \u00b5m`;
}

// umPerUnit: microns per viewport unit; null (the pixel size is unknown) adds no bar.
function addScaleBar(viewer, umPerUnit) {
  if (!umPerUnit) return null;
  const box = document.createElement("div");
  box.className = "scalebar";
  box.innerHTML = '<span class="scale-label"></span><div class="scale-line"></div>';
  viewer.element.parentElement.appendChild(box);
  const [label, line] = box.children;
  const unit = new OpenSeadragon.Point(1, 0);
  const update = () => {
    const pxPerUnit = viewer.viewport.deltaPixelsFromPointsNoRotate(unit, true).x;
    const pxPerUm = pxPerUnit / umPerUnit;
    const um = roundLengthUm(pxPerUm);
    line.style.width = `${(um * pxPerUm).toFixed(1)}px`;
    label.textContent = lengthLabel(um);
  };
  viewer.addHandler("update-viewport", update);
  viewer.addHandler("resize", update);
  update();
  return box;
}
