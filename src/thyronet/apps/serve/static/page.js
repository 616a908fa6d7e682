// The page's only script (the Content Security Policy allows no inline one). It works as the
// logged-in user: the session cookie goes with every call, the CSRF token with every POST.
let csrfToken = null;
async function whoAmI() {
  const response = await fetch("/api/v1/me");
  if (response.status === 401) { window.location.assign("/login"); return; }
  const me = await response.json();
  if (me.must_change_password) { window.location.assign("/login?change=1"); return; }
  csrfToken = me.csrf_token;
  document.getElementById("who").textContent = me.user + " (" + me.role + ")";
}
whoAmI();
document.getElementById("logout").addEventListener("click", async () => {
  await fetch("/api/v1/logout", { method: "POST", headers: { "X-CSRF-Token": csrfToken || "" } });
  window.location.assign("/login");
});

const $ = (id) => document.getElementById(id);
const drop = $("drop"), fileInput = $("file");
function setOpacity() { $("overlay-img").style.opacity = $("opacity").value / 100; $("opacity-value").textContent = $("opacity").value + "%"; }
$("opacity").addEventListener("input", setOpacity); setOpacity();
drop.addEventListener("click", () => fileInput.click());
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") fileInput.click(); });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); if (e.dataTransfer.files.length) analyse(e.dataTransfer.files[0]); });
fileInput.addEventListener("change", () => { if (fileInput.files.length) analyse(fileInput.files[0]); });

let current = null;  // the file on screen, re-sent with a box the user drags
async function analyse(file, box) {
  current = file;
  $("error").textContent = ""; $("busy").classList.add("on");
  const body = new FormData(); body.append("file", file);
  if (box) body.append("box", box.join(","));
  try {
    const response = await fetch("/api/v1/predict", { method: "POST", body, headers: { "X-CSRF-Token": csrfToken || "" } });
    const data = await response.json();
    if (!response.ok) { throw new Error(data.detail || response.statusText); }
    show(data);
  } catch (error) {
    $("error").textContent = "Could not analyse " + file.name + ": " + error.message;
  } finally { $("busy").classList.remove("on"); }
}

function pct(x) { return x === null || x === undefined ? "n/a" : Math.round(x * 100) + "%"; }
function show(data) {
  $("summary").hidden = false;
  $("result-prob").textContent = pct(data.probability_malignant);
  const decision = $("result-decision");
  decision.textContent = data.decision; decision.className = data.decision;
  $("result-threshold").textContent = "Decision threshold " + pct(data.threshold) + ", chosen on validation for sensitivity ≥ "
    + pct(data.target_sensitivity) + " (validation sensitivity " + pct(data.validation_sensitivity)
    + ", specificity " + pct(data.validation_specificity) + ").";
  $("result-warning").textContent = data.warning ? "Warning: this image " + data.warning + "." : "";
  $("result-region").textContent = "Looked at: " + data.region + (data.nodule_box ? " (nodule box " + data.nodule_box.join(", ") + ")" : "") + ".";
  const acr = data.acr_tirads;
  const tirads = acr ? acr.note + (acr.level ? ", proposed from the model's descriptors and outline." : ".") : "";
  $("result-descriptors").textContent = data.descriptors
    ? "Predicted: " + (data.description || "no descriptor assessed") + "; " + tirads : "";
  const size = data.nodule_size;
  $("result-size").textContent = size ? "Nodule size: " + size.long_axis.toFixed(1) + " x " + size.short_axis.toFixed(1) + " "
    + size.unit + (size.unit === "mm" ? "" : " (the image carries no calibration)")
    + (size.taller_than_wide ? ", taller than wide" : "") + "." : "";
  const advice = data.acr_recommendation;
  $("result-recommendation").textContent = advice ? "ACR TI-RADS 2017: " + advice.action + " (" + advice.reason + "); "
    + advice.note + "." : "";
  $("result-model").textContent = "Model " + data.model.name + " (" + data.model.runtime + "), thyronet " + data.model.thyronet_version + ".";
  const input = "data:image/png;base64," + data.input_png;
  $("input-img").src = input; $("base-img").src = input;
  $("overlay-img").src = data.overlay_png ? "data:image/png;base64," + data.overlay_png : "";
  $("notice").textContent = data.notice;
}

// Dragging on the left view: a box in the image's own pixels (the view letterboxes it).
function imageRect() {
  const img = $("input-img"), frame = $("input-stack").getBoundingClientRect();
  const scale = Math.min(frame.width / img.naturalWidth, frame.height / img.naturalHeight);
  const w = img.naturalWidth * scale, h = img.naturalHeight * scale;
  return { left: frame.left + (frame.width - w) / 2, top: frame.top + (frame.height - h) / 2, scale };
}
let dragStart = null;
$("input-stack").addEventListener("mousedown", (e) => { if (current && $("input-img").naturalWidth) { dragStart = [e.clientX, e.clientY]; e.preventDefault(); } });
window.addEventListener("mousemove", (e) => {
  if (!dragStart) return;
  const frame = $("input-stack").getBoundingClientRect(), box = $("drag-box");
  box.style.display = "block";
  box.style.left = Math.min(dragStart[0], e.clientX) - frame.left + "px"; box.style.top = Math.min(dragStart[1], e.clientY) - frame.top + "px";
  box.style.width = Math.abs(e.clientX - dragStart[0]) + "px"; box.style.height = Math.abs(e.clientY - dragStart[1]) + "px";
});
window.addEventListener("mouseup", (e) => {
  if (!dragStart) return;
  const r = imageRect(), img = $("input-img");
  const xs = [dragStart[0], e.clientX].map((x) => Math.round((x - r.left) / r.scale)).sort((a, b) => a - b);
  const ys = [dragStart[1], e.clientY].map((y) => Math.round((y - r.top) / r.scale)).sort((a, b) => a - b);
  dragStart = null; $("drag-box").style.display = "none";
  const box = [Math.max(0, xs[0]), Math.max(0, ys[0]), Math.min(img.naturalWidth, xs[1]), Math.min(img.naturalHeight, ys[1])];
  if (box[2] - box[0] >= 8 && box[3] - box[1] >= 8) analyse(current, box);
});
