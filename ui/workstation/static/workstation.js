// The workstation's small behaviours: image zoom / pan / display, box toggle, keyboard shortcuts,
// worklist navigation, and showing a refused action's problem detail. No framework: htmx does the requests.
(function () {
  "use strict";
  const typing = (el) => el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT");

  // ---- errors from htmx requests (problem+json): shown, never swallowed
  document.addEventListener("htmx:responseError", (event) => {
    const box = document.getElementById("errors");
    if (!box) return;
    let detail = event.detail.xhr.statusText;
    try { detail = JSON.parse(event.detail.xhr.responseText).detail || detail; } catch (e) { /* not JSON */ }
    box.textContent = detail;
  });
  document.addEventListener("htmx:configRequest", () => {
    const box = document.getElementById("errors");
    if (box) box.textContent = "";
  });

  // ---- worklist: click / Enter opens, j / k move
  function worklistRows() { return Array.from(document.querySelectorAll("#rows tr[data-href]")); }
  document.addEventListener("click", (event) => {
    const row = event.target.closest("#rows tr[data-href]");
    if (row && !event.target.closest("a")) window.location.href = row.dataset.href;
  });

  // ---- study page: the regenerated draft goes into the editor only when the radiologist says so
  document.addEventListener("click", (event) => {
    const use = event.target.closest("#use-regenerated");
    if (!use) return;
    document.getElementById("findings_text").value = use.dataset.findings;
    document.getElementById("impression").value = use.dataset.impression;
    document.getElementById("findings_text").focus();
  });

  // ---- study page: zoom and pan with CSS transforms; the SVG boxes are in source pixels and scale with the image
  function viewer() {
    const viewport = document.getElementById("viewport"), stage = document.getElementById("stage"),
          image = document.getElementById("image"), boxes = document.getElementById("boxes");
    if (!viewport || !image) return null;
    const view = { scale: 1, x: 0, y: 0, fit: 1 };
    const apply = () => { stage.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.scale})`; };
    const reset = () => {
      view.fit = Math.min(viewport.clientWidth / image.naturalWidth, viewport.clientHeight / image.naturalHeight) || 1;
      stage.style.width = image.naturalWidth + "px"; stage.style.height = image.naturalHeight + "px";
      view.scale = view.fit;
      view.x = (viewport.clientWidth - image.naturalWidth * view.scale) / 2; view.y = 0; apply();
    };
    const zoom = (factor, cx, cy) => {
      const s = Math.max(view.fit / 4, Math.min(view.fit * 16, view.scale * factor));
      cx = cx ?? viewport.clientWidth / 2; cy = cy ?? viewport.clientHeight / 2;
      view.x = cx - (cx - view.x) * (s / view.scale); view.y = cy - (cy - view.y) * (s / view.scale);
      view.scale = s; apply();
    };
    if (image.complete) reset(); else image.addEventListener("load", reset);
    viewport.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = viewport.getBoundingClientRect();
      zoom(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    let drag = null;
    viewport.addEventListener("pointerdown", (e) => { drag = { x: e.clientX - view.x, y: e.clientY - view.y }; viewport.setPointerCapture(e.pointerId); });
    viewport.addEventListener("pointermove", (e) => { if (drag) { view.x = e.clientX - drag.x; view.y = e.clientY - drag.y; apply(); } });
    viewport.addEventListener("pointerup", () => { drag = null; });
    document.getElementById("zoom-in").addEventListener("click", () => zoom(1.25));
    document.getElementById("zoom-out").addEventListener("click", () => zoom(0.8));
    document.getElementById("zoom-reset").addEventListener("click", reset);
    const toggle = document.getElementById("toggle-boxes");
    const showBoxes = () => { if (boxes) boxes.classList.toggle("hidden", !toggle.checked); };
    toggle.addEventListener("change", showBoxes);
    const display = () => {
      const b = document.getElementById("brightness").value, c = document.getElementById("contrast").value;
      image.style.filter = `brightness(${b}%) contrast(${c}%)`;
    };
    document.getElementById("brightness").addEventListener("input", display);
    document.getElementById("contrast").addEventListener("input", display);
    return { zoom, reset, toggleBoxes: () => { toggle.checked = !toggle.checked; showBoxes(); } };
  }

  document.addEventListener("DOMContentLoaded", () => {
    const v = viewer();
    let selected = -1;
    document.addEventListener("keydown", (e) => {
      if (typing(document.activeElement) || e.ctrlKey || e.metaKey || e.altKey) return;
      const rows = worklistRows();
      if (rows.length) {
        if (e.key === "j" || e.key === "k") {
          selected = Math.max(0, Math.min(rows.length - 1, selected + (e.key === "j" ? 1 : -1)));
          rows.forEach((r, i) => r.classList.toggle("selected", i === selected));
          rows[selected].focus();
        } else if (e.key === "Enter" && document.activeElement.dataset.href) {
          window.location.href = document.activeElement.dataset.href;
        }
        return;
      }
      if (!v) return;
      if (e.key === "b") v.toggleBoxes();
      else if (e.key === "+" || e.key === "=") v.zoom(1.25);
      else if (e.key === "-") v.zoom(0.8);
      else if (e.key === "0") v.reset();
      else if (e.key === "a") document.getElementById("sign").click();
      else if (e.key === "g") document.getElementById("regenerate").click();
      else if (e.key === "u") { const use = document.getElementById("use-regenerated"); if (use) use.click(); }
      else if (e.key === "r") { e.preventDefault(); const reason = document.getElementById("reason"); reason.focus(); }
      else if (e.key === "n") { const next = document.getElementById("next"); if (next) window.location.href = next.href; }
    });
  });
})();
