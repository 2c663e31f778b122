// prodtype: checks that spare a round trip, and a preview of the chosen photo. The server checks again.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("predict-form");
  if (form) {
    const input = document.getElementById("image");
    const message = document.getElementById("image-error");
    const preview = document.getElementById("preview");
    const button = document.getElementById("predict-button");
    const limit = Number(form.dataset.uploadLimit);
    const accepted = ["image/jpeg", "image/png", "image/webp"];

    const problem = () => {
      const file = input.files && input.files[0];
      if (!file) return "";
      if (file.size > limit) {
        const mb = (n) => (n / 1048576).toFixed(1);
        return `The photo is ${mb(file.size)} MB; at most ${mb(limit)} MB is accepted.`;
      }
      if (file.type && !accepted.includes(file.type)) {
        return `The file “${file.name}” is not a JPEG, PNG or WebP photo.`;
      }
      return "";
    };

    input.addEventListener("change", () => {
      const text = problem();
      message.textContent = text; // text, never HTML
      message.hidden = !text;
      const file = input.files && input.files[0];
      if (preview.src) URL.revokeObjectURL(preview.src);
      if (file && !text) {
        preview.src = URL.createObjectURL(file);
        preview.hidden = false;
      } else {
        preview.removeAttribute("src");
        preview.hidden = true;
      }
    });

    form.addEventListener("submit", (event) => {
      const text = problem();
      if (text) {
        event.preventDefault();
        message.textContent = text;
        message.hidden = false;
        return;
      }
      button.disabled = true;
      button.textContent = "Predicting…";
    });
  }

  // Rejecting cannot be undone from the queue: ask first.
  document.querySelectorAll("button.danger[value='reject']").forEach((button) => {
    button.addEventListener("click", (event) => {
      if (!window.confirm("Reject this prediction? It leaves the queue.")) event.preventDefault();
    });
  });
});
