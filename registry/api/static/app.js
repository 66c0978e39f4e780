// mamoru tablet pages: small progressive enhancements; every page works without them.
"use strict";

// Live alert list: reload while nobody is typing or has a form open.
function startLiveRefresh() {
  const seconds = Number(document.body.dataset.live || 0);
  if (!seconds) return;
  setInterval(() => {
    const active = document.activeElement;
    const typing = active && ["INPUT", "TEXTAREA", "SELECT"].includes(active.tagName);
    const filled = Array.from(document.querySelectorAll("input[type=text], textarea"))
      .some((el) => el.value.trim() !== "");
    if (!typing && !filled && document.visibilityState === "visible") window.location.reload();
  }, seconds * 1000);
}

// Propose: check quality in place (the chosen files stay selected); submit only after a pass.
function enhanceProposeForm() {
  const form = document.getElementById("propose-form");
  if (!form) return;
  const check = document.getElementById("check-quality");
  const submit = document.getElementById("submit-proposal");
  const target = document.getElementById("verdict");
  const photos = document.getElementById("photos");
  if (photos) {
    photos.addEventListener("change", () => { submit.disabled = true; });
  }
  check.addEventListener("click", async (event) => {
    event.preventDefault();
    check.disabled = true;
    try {
      const response = await fetch("/propose/check", {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { "X-Requested-With": "fetch" },
      });
      target.innerHTML = await response.text();
      const result = document.getElementById("verdict-result");
      submit.disabled = !(response.ok && result && result.dataset.canSubmit === "true");
    } catch (err) {
      target.textContent = String(err);
      submit.disabled = true;
    } finally {
      check.disabled = false;
    }
  });
}

// No double posts from a second tap.
function guardDoubleSubmit() {
  document.addEventListener("submit", (event) => {
    const button = event.submitter;
    if (button && !button.formAction.endsWith("/propose/check")) {
      setTimeout(() => { button.disabled = true; }, 0);
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  startLiveRefresh();
  enhanceProposeForm();
  guardDoubleSubmit();
});
