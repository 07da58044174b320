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

  function show(next) {
    mode = next;
    if (views.side) views.side.hidden = mode !== "side";
    if (views.stack) views.stack.hidden = !(mode === "swipe" || mode === "overlay");
    if (views.diff) views.diff.hidden = mode !== "diff";
    $("opacity-label").hidden = mode !== "overlay";
    $("swipe-label").hidden = mode !== "swipe";
    apply();
  }

  function apply() {
    if (!cur) return;
    if (mode === "overlay") {
      cur.style.clipPath = "none";
      cur.style.opacity = $("opacity").value / 100;
    } else if (mode === "swipe") {
      cur.style.opacity = 1;
      cur.style.clipPath = "inset(0 0 0 " + $("swipe").value + "%)";
    }
    const z = parseFloat($("zoom").value);
    const inner = $("stack-inner");
    if (inner) inner.style.transform = "scale(" + z + ")";
    const d = $("diff-img");
    if (d) d.style.transform = "scale(" + z + ")";
  }

  document.querySelectorAll('input[name="mode"]').forEach((r) =>
    r.addEventListener("change", () => show(r.value)));
  ["opacity", "swipe", "zoom"].forEach((id) => $(id) && $(id).addEventListener("input", apply));

  // Zoom to a region: overlay view at 200 %, scrolled so the region is in view.
  document.querySelectorAll("a.region").forEach((a) =>
    a.addEventListener("click", (e) => {
      e.preventDefault();
      const target = views.stack ? "overlay" : "diff";
      document.querySelector('input[name="mode"][value="' + target + '"]').checked = true;
      $("zoom").value = "2";
      show(target);
      const box = target === "overlay" ? views.stack : views.diff;
      if (box) box.scrollTo({ left: a.dataset.x * 2 - 40, top: a.dataset.y * 2 - 40 });
    }));

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") return;
    if (e.key === "a" && $("approve-form")) $("approve-form").submit();
    else if (e.key === "r" && $("reject-form")) $("reject-form").submit();
    else if (e.key === "j" && root.dataset.next) location.href = root.dataset.next;
    else if (e.key === "k" && root.dataset.previous) location.href = root.dataset.previous;
  });
})();
