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
      // the messages are the page's, in its language, with %(…)s filled in
      if (file.size > limit) {
        const mb = (n) => (n / 1048576).toFixed(1);
        return fill(form.dataset.tooBig, { size: mb(file.size), limit: mb(limit) });
      }
      if (file.type && !accepted.includes(file.type)) {
        return fill(form.dataset.notPhoto, { name: file.name });
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
      button.textContent = form.dataset.busy;
    });
  }

  // Rejecting cannot be undone from the queue: ask first (the question is the page's, in its language).
  document.querySelectorAll("button.danger[value='reject']").forEach((button) => {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm || "Reject?")) event.preventDefault();
    });
  });

  // Confirmation of other forms that change something for everyone (promote, roll back, disable...).
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  reviewQueue();
  explanations();
  retrainProgress();
  bulkProgress();
});

// "%(name)s" in a message of the page, replaced by values[name] (as text).
function fill(message, values) {
  return message.replace(/%\((\w+)\)s/g, (_, key) => String(values[key]));
}

// The review queue: click a photo to enlarge it; keyboard shortcuts act on the current product.
function reviewQueue() {
  const items = Array.from(document.querySelectorAll("article.review-item"));
  const dialog = document.getElementById("photo-dialog");
  const large = document.getElementById("photo-large");
  const enlarge = (item) => {
    const thumb = item && item.querySelector("img.thumb");
    if (!thumb || !dialog) return;
    large.src = thumb.src;
    dialog.showModal();
  };
  document.querySelectorAll("button.enlarge").forEach((button) => {
    button.addEventListener("click", () => enlarge(button.closest("article")));
  });
  if (!items.length) return;
  let current = 0;
  const select = (index) => {
    current = Math.max(0, Math.min(items.length - 1, index));
    items.forEach((item, i) => item.classList.toggle("current", i === current));
    items[current].focus({ preventScroll: true });
    items[current].scrollIntoView({ block: "nearest" });
  };
  items.forEach((item, i) => item.addEventListener("click", () => select(i)));
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target && ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName)) return;
    if (dialog && dialog.open) return;
    const item = items[current];
    const form = item.querySelector("form.review-form");
    const press = (action) => {
      const button = form.querySelector(`button[value='${action}']`);
      if (button) button.click();
    };
    const key = event.key;
    if (key === "j" || key === "ArrowDown") select(current + 1);
    else if (key === "k" || key === "ArrowUp") select(current - 1);
    else if (key === "a") press("accept");
    else if (key === "r") press("reject");
    else if (key === "z") enlarge(item);
    else if (/^[1-5]$/.test(key)) {
      const candidates = item.querySelectorAll("ol.candidates li");
      const chosen = candidates[Number(key) - 1];
      if (!chosen) return;
      form.querySelector("select[name='prdtypecode']").value = chosen.dataset.code;
      press(key === "1" ? "accept" : "correct");
    } else return;
    event.preventDefault();
  });
}

// The review queue's explanations, one after another once the page is shown (each is computed on demand).
// The fragment is this site's own HTML, rendered with the seller's text escaped; it is parsed inert
// (DOMParser runs no script) and moved in as nodes.
async function explanations() {
  for (const box of document.querySelectorAll("div.why[data-explanation]")) {
    try {
      const response = await fetch(box.dataset.explanation, { credentials: "same-origin" });
      if (!response.ok) continue; // the link to the prediction page stays
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const section = doc.querySelector("section.explanation");
      if (section) box.replaceChildren(document.adoptNode(section));
    } catch (error) {
      // offline or the page is closing: the link stays
    }
  }
}

// Poll a JSON endpoint every second while ``done(record)`` is false; ``show(record)`` updates the page.
function poll(url, show, done) {
  const tick = async () => {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) {
        const record = await response.json();
        show(record);
        if (done(record)) return;
      }
    } catch (error) {
      // the next tick tries again
    }
    window.setTimeout(tick, 1000);
  };
  tick();
}

function retrainProgress() {
  const box = document.getElementById("running-job");
  if (!box || !box.dataset.poll) return;
  const step = document.getElementById("job-step");
  const status = document.getElementById("job-status");
  poll(
    box.dataset.poll,
    (job) => {
      step.textContent = job.step_label || job.step || "";
      status.textContent = job.label || job.status || "";
      box.dataset.status = job.status || "";
    },
    (job) => job.status !== "running",
  );
}

function bulkProgress() {
  const box = document.getElementById("bulk-job");
  if (!box || !box.dataset.poll) return;
  const bar = document.getElementById("bulk-progress");
  const done = document.getElementById("bulk-done");
  const status = document.getElementById("bulk-status");
  poll(
    box.dataset.poll,
    (job) => {
      bar.max = Math.max(1, job.total || 0);
      bar.value = job.done || 0;
      done.textContent = `${job.done || 0} / ${job.total || 0}`;
      status.textContent = job.label || job.status || "";
      box.dataset.status = job.status || "";
      if (!unfinished(job)) window.location.reload();
    },
    (job) => !unfinished(job),
  );
}

// A bulk job is queued, then running; done or failed are final (the page then shows the result).
function unfinished(job) {
  return job.status === "queued" || job.status === "running";
}
