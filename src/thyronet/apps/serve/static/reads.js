// The reading page: the worklist and the reading view. It uses exactly the REST calls of
// /api/v1/reads (and /api/v1/me for the CSRF token); every value it shows comes from the server,
// which recomputes the ACR TI-RADS points, level and recommendation from what is confirmed.
const $ = (id) => document.getElementById(id);
let csrfToken = null, vocabulary = [], reads = [], selected = 0, current = null, image = null;

async function api(path, options = {}) {
  const headers = Object.assign({ "X-CSRF-Token": csrfToken || "" }, options.json ? { "Content-Type": "application/json" } : {});
  const response = await fetch(path, { method: options.method || "GET", headers,
    body: options.json ? JSON.stringify(options.json) : options.body });
  if (response.status === 401) { window.location.assign("/login"); throw new Error("not logged in"); }
  const data = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) { throw new Error((data && data.detail) || response.statusText); }
  return data;
}

function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) { node.textContent = text; }
  for (const [key, value] of Object.entries(attributes)) { node.setAttribute(key, value); }
  return node;
}

async function start() {
  const me = await api("/api/v1/me");
  if (me.must_change_password) { window.location.assign("/login?change=1"); return; }
  csrfToken = me.csrf_token;
  $("who").textContent = me.user + " (" + me.role + ")";
  vocabulary = await api("/api/v1/reads/vocabulary");
  await loadWorklist();
}

async function loadWorklist() {
  const query = new URLSearchParams({ sort: $("sort").value });
  if ($("state").value) { query.set("state", $("state").value); }
  reads = await api("/api/v1/reads?" + query);
  const body = $("worklist").querySelector("tbody");
  body.replaceChildren();
  reads.forEach((read, index) => {
    const row = element("tr", null, { "data-id": read.id });
    const patient = read.patient ? (read.patient.name || read.patient.id || "-") : "(hidden)";
    for (const cell of [read.arrived.replace("T", " ").slice(0, 16), read.state, patient,
      read.acr_tirads.level || "incomplete", read.suspicion === null ? "-" : read.suspicion.toFixed(2)]) {
      row.append(element("td", cell));
    }
    row.addEventListener("click", () => { selected = index; openRead(read.id); });
    body.append(row);
  });
  markSelected();
}

function markSelected() {
  $("worklist").querySelectorAll("tbody tr").forEach((row, index) => row.classList.toggle("selected", index === selected));
}

async function openRead(id) {
  current = await api("/api/v1/reads/" + encodeURIComponent(id));
  const blob = await (await fetch("/api/v1/reads/" + encodeURIComponent(id) + "/image")).blob();
  image = await createImageBitmap(blob);
  $("worklist-card").hidden = true; $("read-card").hidden = false;
  showRead();
}

function showRead() {
  const read = current, signed = read.state === "signed";
  $("read-title").textContent = "Read " + read.read + " (version " + read.version + ", " + read.state + ")";
  $("patient").textContent = read.patient ? [read.patient.name, read.patient.id, read.patient.accession].filter(Boolean).join(" · ") : "";
  const form = $("categories");
  form.replaceChildren();
  for (const category of vocabulary) {
    const set = element("fieldset"); set.append(element("legend", category.name));
    const chosen = read.confirmed.categories?.[category.name] || [];
    const proposed = read.proposal.categories?.[category.name] || [];
    for (const [value, points] of Object.entries(category.values)) {
      const label = element("label");
      const input = element("input", null, { type: category.multiple ? "checkbox" : "radio", name: category.name, value });
      input.checked = chosen.includes(value); input.disabled = signed;
      input.addEventListener("change", saveCategories);
      label.append(input, " " + value + " (" + points + ")");
      if (proposed.includes(value)) { label.append(element("span", " proposed by the model", { class: "proposed" })); }
      set.append(label);
    }
    form.append(set);
  }
  const size = read.max_diameter_mm;
  $("size").textContent = size === null ? (read.calibrated ? "No calipers." : "No calibration: size in pixels only; the recommendation needs millimetres.")
    : "Long axis " + size.toFixed(1) + " mm (calipers).";
  $("level").textContent = read.acr_tirads.note;
  $("recommendation").textContent = "ACR recommendation: " + read.recommendation.action + " (" + read.recommendation.reason + ")";
  $("changed").textContent = read.changed.length ? "Changed from the proposal: " + read.changed.join(", ") : "Nothing changed from the proposal yet.";
  const p = read.proposal.probability;
  $("model").textContent = "Model " + (read.model.name || "?") + ": P(malignant) " + (p === null || p === undefined ? "-" : p.toFixed(2))
    + " (secondary information)." + (read.signed_by ? " Signed by " + read.signed_by + " at " + read.signed_at + "." : "");
  $("outcomes").textContent = read.outcomes.map((o) => o.kind + " " + o.value).join(", ");
  $("sign").disabled = signed; $("amend").disabled = !signed;
  $("read-error").textContent = "";
  draw();
}

window.pending = 0;  // changes sent and not yet answered (tests wait for 0)
async function change(body) {
  window.pending += 1;
  try { current = await api("/api/v1/reads/" + encodeURIComponent(current.id), { method: "PUT", json: body }); showRead(); }
  catch (error) { $("read-error").textContent = error.message; }
  finally { window.pending -= 1; }
}

function saveCategories() {
  const categories = {};
  for (const category of vocabulary) {
    const values = [...$("categories").querySelectorAll("input[name='" + category.name + "']:checked")].map((i) => i.value);
    if (values.length) { categories[category.name] = values; }
  }
  change({ categories });
}

// The canvas: the image at its own pixels, the outline's points and the calipers' ends draggable.
const canvas = $("canvas");
let dragging = null;
function handles() {  // the calipers' ends first: where one sits on an outline point, the caliper is taken
  const found = [];
  for (const name of ["long", "short"]) {
    (current.confirmed.calipers?.[name] || []).forEach((point, index) => found.push({ kind: name, index, point }));
  }
  (current.confirmed.outline || []).forEach((point, index) => found.push({ kind: "outline", index, point }));
  return found;
}
function draw() {
  canvas.width = image.width; canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const outline = current.confirmed.outline;
  const radius = Math.max(3, image.width / 160);
  context.lineWidth = Math.max(1.5, image.width / 400);
  if (outline && outline.length) {
    context.strokeStyle = "#00e678"; context.beginPath();
    outline.forEach(([x, y], i) => (i ? context.lineTo(x, y) : context.moveTo(x, y)));
    context.closePath(); context.stroke();
  }
  context.strokeStyle = "#ffd400";
  for (const name of ["long", "short"]) {
    const segment = current.confirmed.calipers?.[name];
    if (segment) { context.beginPath(); context.moveTo(...segment[0]); context.lineTo(...segment[1]); context.stroke(); }
  }
  for (const handle of handles()) {
    context.fillStyle = handle.kind === "outline" ? "#00e678" : "#ffd400";
    context.beginPath(); context.arc(handle.point[0], handle.point[1], radius, 0, 2 * Math.PI); context.fill();
  }
}
function imagePoint(event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
}
canvas.addEventListener("pointerdown", (event) => {
  if (!current || current.state === "signed") { return; }
  const [x, y] = imagePoint(event), reach = Math.max(8, canvas.width / 60);
  const distance = (h) => Math.hypot(h.point[0] - x, h.point[1] - y);
  dragging = handles().filter((h) => distance(h) < reach).reduce((best, h) => (best && distance(best) <= distance(h) ? best : h), null);
  if (dragging) { canvas.setPointerCapture(event.pointerId); }
});
canvas.addEventListener("pointermove", (event) => {
  if (!dragging) { return; }
  const point = imagePoint(event).map((v) => Math.round(v * 10) / 10);
  if (dragging.kind === "outline") { current.confirmed.outline[dragging.index] = point; }
  else { current.confirmed.calipers[dragging.kind][dragging.index] = point; }
  dragging.point = point; draw();
});
canvas.addEventListener("pointerup", () => {
  if (!dragging) { return; }
  const part = dragging.kind === "outline" ? "outline" : "calipers";
  dragging = null;
  change({ [part]: current.confirmed[part] });
});

async function act(path, body) {
  try { current = await api("/api/v1/reads/" + encodeURIComponent(current.id) + path, { method: "POST", json: body || {} }); showRead(); }
  catch (error) { $("read-error").textContent = error.message; }
}
$("sign").addEventListener("click", () => act("/sign"));
$("amend").addEventListener("click", () => act("/amend"));
$("outcome-save").addEventListener("click", () => act("/outcome", { kind: $("outcome-kind").value, value: $("outcome-value").value }));
$("back").addEventListener("click", back);
async function back() { $("read-card").hidden = true; $("worklist-card").hidden = false; current = null; await loadWorklist(); }
$("state").addEventListener("change", loadWorklist);
$("sort").addEventListener("change", loadWorklist);
$("upload").addEventListener("change", async () => {
  const file = $("upload").files[0];
  if (!file) { return; }
  const body = new FormData(); body.append("file", file);
  try { const read = await api("/api/v1/reads", { method: "POST", body }); await loadWorklist(); await openRead(read.id); }
  catch (error) { alert("Could not add " + file.name + ": " + error.message); }
});
document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT" && event.target.type === "text") { return; }
  if (current) {
    if (event.key === "Escape") { back(); }
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && current.state !== "signed") { act("/sign"); }
    return;
  }
  if (event.key === "j" || event.key === "ArrowDown") { selected = Math.min(selected + 1, reads.length - 1); markSelected(); }
  if (event.key === "k" || event.key === "ArrowUp") { selected = Math.max(selected - 1, 0); markSelected(); }
  if (event.key === "Enter" && reads[selected]) { openRead(reads[selected].id); }
});
$("logout").addEventListener("click", async () => {
  await fetch("/api/v1/logout", { method: "POST", headers: { "X-CSRF-Token": csrfToken || "" } });
  window.location.assign("/login");
});
start().catch((error) => { document.body.prepend(element("p", "Could not load the worklist: " + error.message, { role: "alert" })); });
