// Log in (JSON to /api/v1/login sets the session cookie); an account with a one-time password
// chooses its own before it goes on to the page.
const $ = (id) => document.getElementById(id);
let csrfToken = null;

function showChange() { $("login-form").hidden = true; $("change-form").hidden = false; $("current").focus(); }

async function post(url, payload) {
  const response = await fetch(url, {
    method: "POST", body: JSON.stringify(payload),
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken || "" },
  });
  const data = await response.json();
  if (!response.ok) { throw new Error(data.detail || response.statusText); }
  return data;
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault(); $("error").textContent = "";
  try {
    const session = await post("/api/v1/login", { username: $("username").value, password: $("password").value });
    csrfToken = session.csrf_token;
    if (session.must_change_password) { $("current").value = $("password").value; showChange(); }
    else { window.location.assign("/"); }
  } catch (error) { $("error").textContent = error.message; }
});

$("change-form").addEventListener("submit", async (event) => {
  event.preventDefault(); $("error").textContent = "";
  if ($("new").value !== $("again").value) { $("error").textContent = "The two new passwords differ."; return; }
  try {
    await post("/api/v1/password", { current: $("current").value, new: $("new").value });
    window.location.assign("/");
  } catch (error) { $("error").textContent = error.message; }
});

if (new URLSearchParams(window.location.search).has("change")) {  // sent here by the page, already logged in
  fetch("/api/v1/me").then((r) => r.json()).then((me) => { csrfToken = me.csrf_token; showChange(); });
}
