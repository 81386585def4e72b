// The page of `vision-tl serve`: choose, drop or paste an image; show the top classes and a Grad-CAM overlay.
// Served by the server itself (no CDN); talks to /health, /predict and /cam on the same origin.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const TOP_K = 5;
  let current = null; // the chosen image (a Blob)
  let auth = false;

  function headers() {
    const key = $("api-key").value.trim();
    return auth && key ? { Authorization: "Bearer " + key } : {};
  }

  function showError(message) {
    $("error").textContent = message; // textContent: server messages (file names) are never HTML
    $("error").hidden = !message;
  }

  async function errorOf(response) {
    try { return (await response.json()).error || response.statusText; } catch (e) { return response.statusText; }
  }

  async function loadHealth() {
    for (;;) {
      try {
        const r = await fetch("/health");
        const h = await r.json();
        if (r.ok) {
          auth = !!h.auth;
          $("key-row").hidden = !auth;
          $("model").textContent = h.model + " \u00b7 " + h.classes.length + " classes: " +
            h.classes.slice(0, 8).join(", ") + (h.classes.length > 8 ? ", \u2026" : "") +
            (h.multi_label ? " \u00b7 multi-label" : "");
          return;
        }
        $("model").textContent = h.status === "error" ? "the model failed to load: " + h.error : "loading the model\u2026";
        if (h.status === "error") return;
      } catch (e) { $("model").textContent = "the server does not answer"; }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  function drawBars(result) {
    const rows = result.top_k || Object.entries(result.probs).sort((a, b) => b[1] - a[1]).slice(0, TOP_K);
    $("label").textContent = result.label !== undefined ? result.label
      : (result.labels.length ? result.labels.join(", ") : "(no label above the threshold)");
    const list = $("bars");
    list.replaceChildren();
    for (const [name, p] of rows) {
      const li = document.createElement("li");
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = (100 * p).toFixed(1) + "%";
      const text = document.createElement("span");
      const n = document.createElement("b");
      n.textContent = name;
      const v = document.createElement("em");
      v.textContent = (100 * p).toFixed(1) + "%";
      text.append(n, v);
      li.append(fill, text);
      list.append(li);
    }
  }

  async function drawCam() {
    const canvas = $("cam");
    if (!$("cam-toggle").checked || !current) {
      canvas.hidden = true; $("cam-note").hidden = true; $("preview").hidden = false;
      return;
    }
    const r = await fetch("/cam?overlay=true", { method: "POST", headers: { ...headers(), "Content-Type": current.type || "application/octet-stream" }, body: current });
    if (!r.ok) { showError(await errorOf(r)); $("cam-toggle").checked = false; return; }
    const bitmap = await createImageBitmap(await r.blob());
    canvas.width = bitmap.width; canvas.height = bitmap.height;
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
    canvas.dataset.drawn = "1";
    canvas.hidden = false; $("cam-note").hidden = false; $("preview").hidden = true;
  }

  async function classify(blob, name) {
    showError("");
    current = blob;
    const preview = $("preview");
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(blob);
    const form = new FormData();
    form.append("file", blob, name || "pasted-image");
    const t0 = performance.now();
    const r = await fetch("/predict?top_k=" + TOP_K, { method: "POST", headers: headers(), body: form });
    if (!r.ok) { $("result").hidden = true; showError(await errorOf(r)); return; }
    drawBars(await r.json());
    $("timing").textContent = "answered in " + Math.round(performance.now() - t0) + " ms";
    $("result").hidden = false;
    await drawCam();
  }

  $("file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) classify(f, f.name); });
  $("cam-toggle").addEventListener("change", drawCam);
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    const f = e.dataTransfer.files[0];
    if (f) classify(f, f.name);
  });
  document.addEventListener("paste", (e) => {
    for (const item of e.clipboardData.items) {
      if (item.kind === "file" && item.type.startsWith("image/")) { classify(item.getAsFile(), "pasted-image"); return; }
    }
  });
  const saved = sessionStorage.getItem("vision-tl-api-key");
  if (saved) $("api-key").value = saved;
  $("api-key").addEventListener("change", () => sessionStorage.setItem("vision-tl-api-key", $("api-key").value));
  loadHealth();
})();
