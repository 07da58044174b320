// The review page's extras: view modes (side by side, swipe, overlay, diff only), zoom, jump to
// a changed region, and the keys a (approve), r (reject), j / k (older / newer change).
// Everything also works without this script, through the plain forms and links.
(function () {
  const root = document.getElementById("review");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const views = { side: $("side"), stack: $("stack"), diff: $("diffonly") };
  const cur = $("stack-cur");
  let mode = "side";

  // Only the chosen mode's view is shown (the stylesheet makes `hidden` beat any display), so
  // the comparison starts right under the controls.
  function show(next) {
    mode = next;
    if (views.side) views.side.hidden = mode !== "side";
    if (views.stack) views.stack.hidden = !(mode === "swipe" || mode === "overlay");
    if (views.diff) views.diff.hidden = mode !== "diff";
    $("opacity-label").hidden = mode !== "overlay";
    $("swipe-label").hidden = mode !== "swipe";
    apply();
  }

  function zoom() {
    return parseFloat($("zoom").value) || 1;
  }

  function apply() {
    if (cur) {
      if (mode === "overlay") {
        cur.style.clipPath = "none";
        cur.style.opacity = $("opacity").value / 100;
      } else if (mode === "swipe") {
        cur.style.opacity = 1;
        cur.style.clipPath = "inset(0 0 0 " + $("swipe").value + "%)";
      }
    }
    // The wrappers are scaled, not the images, so a region's mark scales with them.
    ["stack-inner", "diff-inner"].forEach((id) => {
      if ($(id)) $(id).style.transform = "scale(" + zoom() + ")";
    });
  }

  document.querySelectorAll('input[name="mode"]').forEach((r) =>
    r.addEventListener("change", () => show(r.value)));
  ["opacity", "swipe", "zoom"].forEach((id) => $(id) && $(id).addEventListener("input", apply));

  // Outlines the region inside the view's scaled wrapper (in image pixels, like the region).
  function mark(inner, g) {
    let m = inner.querySelector(".region-mark");
    if (!m) {
      m = document.createElement("div");
      m.className = "region-mark";
      m.setAttribute("aria-hidden", "true");
      inner.appendChild(m);
    }
    m.style.left = g.x + "px";
    m.style.top = g.y + "px";
    m.style.width = g.w + "px";
    m.style.height = g.h + "px";
  }

  // Zoom to a region: overlay view (diff only without a baseline) at 200 %. The view is brought
  // on screen first, then scrolled inside so the region sits in its middle.
  document.querySelectorAll("a.region").forEach((a) =>
    a.addEventListener("click", (e) => {
      e.preventDefault();
      const target = views.stack ? "overlay" : views.diff ? "diff" : null;
      if (!target) return;
      document.querySelector('input[name="mode"][value="' + target + '"]').checked = true;
      $("zoom").value = "2";
      show(target);
      const box = target === "overlay" ? views.stack : views.diff;
      const g = { x: +a.dataset.x, y: +a.dataset.y, w: +a.dataset.w, h: +a.dataset.h };
      mark(box.querySelector(".zoom-inner"), g);
      box.scrollIntoView({ block: "nearest" });
      const z = zoom();
      box.scrollTo({
        left: g.x * z - Math.max(0, (box.clientWidth - g.w * z) / 2),
        top: g.y * z - Math.max(0, (box.clientHeight - g.h * z) / 2),
      });
    }));

  // Draw a mask: drag on the current capture; the rectangle, in the capture's own pixels, fills
  // the mask form (which also takes typed numbers, without this script).
  const shot = $("current-img");
  const maskForm = $("mask-form");
  if (shot && maskForm) {
    let start = null;
    let drawn = null;
    const at = (e) => {
      const r = shot.getBoundingClientRect();
      const k = shot.naturalWidth / r.width || 1;
      const x = Math.min(shot.naturalWidth - 1, Math.max(0, Math.round((e.clientX - r.left) * k)));
      const y = Math.min(shot.naturalHeight - 1, Math.max(0, Math.round((e.clientY - r.top) * k)));
      return { x, y, k, cx: e.clientX, cy: e.clientY };
    };
    const place = (a, b) => {
      const g = { x: Math.min(a.x, b.x), y: Math.min(a.y, b.y), w: Math.max(1, Math.abs(a.x - b.x)), h: Math.max(1, Math.abs(a.y - b.y)) };
      drawn.style.left = g.x / a.k + "px";
      drawn.style.top = g.y / a.k + "px";
      drawn.style.width = g.w / a.k + "px";
      drawn.style.height = g.h / a.k + "px";
      return g;
    };
    shot.style.cursor = "crosshair";
    shot.style.touchAction = "none";
    shot.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      e.preventDefault();
      start = at(e);
      shot.setPointerCapture(e.pointerId);
      if (!drawn) {
        drawn = document.createElement("div");
        drawn.className = "drawn-mask";
        drawn.setAttribute("aria-hidden", "true");
        shot.parentElement.appendChild(drawn);
      }
      place(start, start);
    });
    shot.addEventListener("pointermove", (e) => {
      if (start) place(start, at(e));
    });
    shot.addEventListener("pointercancel", () => {
      start = null;
      if (drawn) drawn.style.width = "0";
    });
    shot.addEventListener("pointerup", (e) => {
      if (!start) return;
      const end = at(e);
      // A click, not a drag: nothing drawn.
      if (Math.abs(end.cx - start.cx) < 4 && Math.abs(end.cy - start.cy) < 4) {
        start = null;
        drawn.style.width = "0";
        return;
      }
      const g = place(start, end);
      start = null;
      $("masking").open = true;
      $("mask-x").value = g.x;
      $("mask-y").value = g.y;
      $("mask-width").value = g.w;
      $("mask-height").value = g.h;
    });
  }

  // Keys pressed in a text field are text, not shortcuts. Anywhere else (the page, a link, a
  // button, the zoom select, and the view-mode radios, which keep the focus once clicked) they
  // are shortcuts.
  const NOT_TEXT = ["radio", "checkbox", "range", "button", "submit", "reset", "color", "file", "image"];
  function typing(el) {
    if (!el || !el.tagName) return false;
    if (el.isContentEditable) return true;
    const tag = el.tagName.toLowerCase();
    if (tag === "textarea") return true;
    return tag === "input" && !NOT_TEXT.includes((el.type || "text").toLowerCase());
  }

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat || e.defaultPrevented) return;
    if (typing(e.target)) return;
    if (e.key === "a" && $("approve-form")) $("approve-form").submit();
    else if (e.key === "r" && $("reject-form")) $("reject-form").submit();
    else if (e.key === "j" && root.dataset.older) location.href = root.dataset.older;
    else if (e.key === "k" && root.dataset.newer) location.href = root.dataset.newer;
  });
})();
