// retauth kiosk page: screen switching and calls to the loopback JSON API.
// Nothing is stored in the browser (no cookies, no localStorage); the operator token lives in
// a variable only while the operator screen is open, and every screen resets after a result.
"use strict";

const $ = (id) => document.getElementById(id);
const screens = ["home", "verify", "busy", "result", "operator"];
let config = { upload: true, scanner: null, operator: false, result_timeout_s: 20, max_enrol_images: 5 };
let resultTimer = null;

function show(name) {
  for (const s of screens) $(s).hidden = s !== name;
}

function resetAll() {
  for (const id of ["verify-id", "verify-file", "operator-token", "enrol-id", "enrol-files"]) $(id).value = "";
  for (const id of ["verify-file-name", "verify-error", "enrol-file-name", "operator-message"]) $(id).textContent = "";
  $("operator-message").className = "message";
  $("result-overlay").removeAttribute("src");
  $("result-overlay").hidden = true;
  clearTimeout(resultTimer);
  show("home");
}

async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    return { status: 0, body: { error: "the kiosk service is not reachable" } };
  }
  let body;
  try {
    body = await response.json();
  } catch (err) {
    body = { error: "unexpected reply from the kiosk service" };
  }
  return { status: response.status, body };
}

function fileToBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function showResult(body) {
  const banner = $("result-banner");
  const accepted = body.decision === "accepted";
  banner.className = "banner " + (accepted ? "ok" : "fail");
  if (accepted) {
    banner.textContent = body.mode === "1:N" ? "Recognised: " + body.user_id : "Verified: " + body.user_id;
  } else {
    banner.textContent = "Not verified";
  }
  const img = $("result-overlay");
  if (body.overlay_png) {
    img.src = body.overlay_png;
    img.hidden = false;
  } else {
    img.hidden = true;
  }
  show("result");
  clearTimeout(resultTimer);
  resultTimer = setTimeout(resetAll, config.result_timeout_s * 1000);
}

async function verify(useScanner) {
  const file = $("verify-file").files[0];
  if (!useScanner && !file) {
    $("verify-error").textContent = "Choose a photograph first.";
    return;
  }
  const params = new URLSearchParams();
  const id = $("verify-id").value.trim();
  if (id) params.set("user_id", id);
  if (useScanner) params.set("source", "device");
  show("busy");
  const { status, body } = await api("/api/verify?" + params.toString(), {
    method: "POST",
    headers: { "Content-Type": "application/octet-stream" },
    body: useScanner ? new Uint8Array(0) : file,
  });
  if (status === 200) {
    showResult(body);
  } else {
    show("verify");
    $("verify-error").textContent = body.error || "Something went wrong; please try again.";
  }
}

async function enrol(useScanner) {
  const message = $("operator-message");
  message.className = "message";
  const files = Array.from($("enrol-files").files);
  const payload = { user_id: $("enrol-id").value.trim() };
  if (useScanner) {
    payload.scans = 3;
  } else {
    if (files.length === 0) {
      message.textContent = "Choose at least one photograph.";
      return;
    }
    payload.images = await Promise.all(files.map(fileToBase64));
  }
  message.textContent = "Enrolling\u2026";
  const { status, body } = await api("/api/enrol", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Operator-Token": $("operator-token").value },
    body: JSON.stringify(payload),
  });
  if (status === 200) {
    message.className = "message ok";
    message.textContent = "Enrolled " + body.user_id + " (" + body.references + " reference" +
      (body.references === 1 ? "" : "s") + ").";
    $("enrol-id").value = "";
    $("enrol-files").value = "";
    $("enrol-file-name").textContent = "";
  } else {
    message.className = "message fail";
    message.textContent = body.error || "Enrolment failed.";
  }
}

function describeFiles(input, target) {
  const n = input.files.length;
  target.textContent = n === 0 ? "" : n === 1 ? input.files[0].name : n + " photographs chosen";
}

async function init() {
  const { status, body } = await api("/api/config", {});
  if (status === 200) config = body;
  $("go-operator").hidden = !config.operator;
  $("verify-file-label").hidden = !config.upload;
  $("verify-submit").hidden = !config.upload;
  $("enrol-file-label").hidden = !config.upload;
  $("enrol-submit").hidden = !config.upload;
  $("verify-scan").hidden = !config.scanner;
  $("enrol-scan").hidden = !config.scanner;

  $("go-verify").addEventListener("click", () => show("verify"));
  $("go-operator").addEventListener("click", () => show("operator"));
  for (const b of document.querySelectorAll(".back")) b.addEventListener("click", resetAll);
  $("result-done").addEventListener("click", resetAll);
  $("verify-file").addEventListener("change", () => {
    $("verify-error").textContent = "";
    describeFiles($("verify-file"), $("verify-file-name"));
  });
  $("enrol-files").addEventListener("change", () => describeFiles($("enrol-files"), $("enrol-file-name")));
  $("verify-submit").addEventListener("click", () => verify(false));
  $("verify-scan").addEventListener("click", () => verify(true));
  $("enrol-submit").addEventListener("click", () => enrol(false));
  $("enrol-scan").addEventListener("click", () => enrol(true));
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", init);
