// The review page works without this script; it only remembers the reviewer's name between
// visits and asks before a rejection, which cannot be undone.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const key = "acgs.reviewer";
  const saved = window.localStorage.getItem(key) || "";
  for (const input of document.querySelectorAll("input.reviewer")) {
    if (!input.value) input.value = saved;
    input.addEventListener("change", () => window.localStorage.setItem(key, input.value.trim()));
  }
  for (const form of document.querySelectorAll("form[data-request]")) {
    form.addEventListener("submit", (event) => {
      const button = event.submitter;
      if (button && button.classList.contains("reject") &&
          !window.confirm(`Reject ${form.dataset.request}? A rejection is final.`)) {
        event.preventDefault();
      }
    });
  }
});
