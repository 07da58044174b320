//! The words a PNG capture shows, with their boxes in image pixels (CSS pixels × scale, from the
//! shot's top-left corner): recorded in the PNG so that the diff can tell what changed in words
//! (`crate::diff::text`).
//!
//! Every visible text node of the top document is read (an element hidden by `display`,
//! `visibility`, `opacity: 0` or `content-visibility` on itself or an ancestor is not visible),
//! open shadow roots included, word by word (a `Range` over each run of non-space characters),
//! in document order. Not read: text in frames, form fields' values, generated content
//! (`::before`), images' `alt`. Text scrolled out of an `overflow` box or under another element
//! still counts.
//!
//! The script runs in an isolated world of its own: the page's scripts share the DOM with it but
//! not its globals, so a page that patches `Range` or `getComputedStyle` does not change what is
//! read.

use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::page::CreateIsolatedWorldParams;
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;

use super::engine::Rect;
use super::error::CaptureError;
use crate::diff::text::{MAX_WORD_CHARS, MAX_WORDS, TextSnapshot, Word, clean};

/// How long reading a page's words may take before the capture goes without them.
const TIMEOUT: Duration = Duration::from_secs(3);
/// How long the reading script runs before it gives up by itself (a page with a huge DOM).
const SCRIPT_BUDGET: Duration = Duration::from_secs(2);

/// [`read`] within [`TIMEOUT`], and how long it took (ms). A page whose main thread is busy, or
/// whose DOM breaks the reading, leaves the capture without its words, not without its picture.
pub(super) async fn read_within(page: &Page, clip: &Rect, scale: f64) -> (Option<TextSnapshot>, u64) {
    let started = Instant::now();
    let words = match tokio::time::timeout(TIMEOUT, read(page, clip, scale)).await {
        Ok(Ok(words)) => Some(words),
        Ok(Err(e)) => {
            tracing::info!(error = %e, "the page's words could not be read; the capture goes without them");
            None
        }
        Err(_) => {
            tracing::info!("reading the page's words took too long; the capture goes without them");
            None
        }
    };
    (words, started.elapsed().as_millis() as u64)
}

/// The words inside `clip` (page CSS pixels), in image pixels at `scale`.
async fn read(page: &Page, clip: &Rect, scale: f64) -> Result<TextSnapshot, CaptureError> {
    let js = format!(
        r#"(() => {{
  const out = [];
  // Stops itself (a timeout on our side would leave it running on the page's main thread).
  const until = performance.now() + {budget};
  const range = document.createRange();
  const sx = window.scrollX, sy = window.scrollY;
  const skip = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE', 'HEAD']);
  const shown = new Map();
  const visible = el => {{
    let v = shown.get(el);
    if (v === undefined) {{
      v = el.checkVisibility({{ opacityProperty: true, visibilityProperty: true, contentVisibilityAuto: true }});
      shown.set(el, v);
    }}
    return v;
  }};
  const filter = {{ acceptNode: n => n.nodeType === 1 && skip.has(n.tagName) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT }};
  const walk = root => {{
    const w = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT, filter);
    for (let n = w.nextNode(); n && out.length < {MAX_WORDS}; n = w.nextNode()) {{
      if (n.nodeType === 1) {{ if (n.shadowRoot) walk(n.shadowRoot); continue; }}
      const el = n.parentElement;
      if (!el || !visible(el)) continue;
      const re = /\S+/gu;
      let m;
      if (performance.now() > until) throw new Error('too long');
      while ((m = re.exec(n.data)) !== null && out.length < {MAX_WORDS}) {{
        range.setStart(n, m.index);
        range.setEnd(n, m.index + m[0].length);
        const r = range.getBoundingClientRect();
        if (r.width < 0.5 || r.height < 0.5) continue;
        out.push([r.left + sx, r.top + sy, r.width, r.height, Array.from(m[0].slice(0, 4 * {MAX_WORD_CHARS})).slice(0, {MAX_WORD_CHARS}).join('')]);
      }}
    }}
  }};
  walk(document);
  return out;
}})()"#,
        budget = SCRIPT_BUDGET.as_millis()
    );
    let frame = page
        .mainframe()
        .await?
        .ok_or_else(|| CaptureError::Navigation("the page has no main frame".into()))?;
    let world = CreateIsolatedWorldParams {
        frame_id: frame,
        world_name: Some("vigil-words".into()),
        grant_univeral_access: None,
    };
    let context = page.execute(world).await?.result.execution_context_id;
    let params = EvaluateParams::builder()
        .expression(js)
        .context_id(context)
        .return_by_value(true)
        .build()
        .expect("expression is set");
    let found: Vec<(f64, f64, f64, f64, String)> = page
        .evaluate_expression(params)
        .await?
        .into_value()
        .map_err(|e| CaptureError::Navigation(format!("unexpected words: {e}")))?;
    let words = found
        .into_iter()
        .take(MAX_WORDS)
        .filter_map(|(x, y, width, height, text)| {
            let r = Rect { x, y, width, height }.in_image(clip, scale)?;
            let text = clean(&text);
            (!text.is_empty()).then_some(Word(r.x, r.y, r.width, r.height, text))
        })
        .collect();
    Ok(TextSnapshot { version: 1, words })
}
