// The 20-page site of scripts/bench-cycle.sh: reports, tables and images (pages 0-11), CSS
// animations, transitions and a focused input with a blinking caret (12-15), a web font served
// 300 ms late with `font-display: swap` (16-18), and lazy images below the fold (19).
// `POST /_mode/test` makes four real changes (pages 3, 9, 14, 17); `POST /_mode/reference` undoes
// them. Serves on 127.0.0.1:PORT (default 8798) until killed.
//   node site.mjs [PORT]
import http from 'node:http';
import fs from 'node:fs';

const port = Number(process.argv[2] || 8798);
const fontPath = ['/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf',
  '/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf'].find(p => fs.existsSync(p));
const font = fontPath ? fs.readFileSync(fontPath) : null;
const lorem = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. ';
let mode = 'reference';
const CHANGED = new Set([3, 9, 14, 17]);

function body(i, changed, top) {
  const rows = Array.from({ length: 8 + (i % 4) * 3 }, (_, r) =>
    `<tr><td>${r}</td><td>Item ${i}-${r}</td><td>${(r * 37 + i) % 1000}.00</td><td>${lorem.slice(0, 40 + (r % 30))}</td></tr>`).join('');
  const svg = (c) => `<svg xmlns='http://www.w3.org/2000/svg' width='200' height='100'><rect width='200' height='100' fill='${c}'/><circle cx='50' cy='50' r='34' fill='white'/></svg>`;
  const imgs = ['#3366cc', '#dc3912', '#ff9900', '#109618'].map(c =>
    `<img width=200 height=100 src="data:image/svg+xml,${encodeURIComponent(svg(c))}">`).join(' ');
  const price = changed ? '$79' : '$49';
  return `<header><h1>Report ${i}</h1><nav>Home · Reports · Settings</nav></header><main>
${top}<p class=price>Plan: <b>${price}</b> per month</p><p>${lorem.repeat(2 + (i % 3))}</p>${imgs}
<div>${Array.from({ length: 3 }, (_, k) => `<div class=card><h3>Card ${k}</h3><p>${lorem.slice(0, 90)}</p></div>`).join('')}</div>
<table>${rows}</table></main>`;
}

const BASE_CSS = `body{font-family:sans-serif;margin:0;color:#222} header{background:#234;color:#fff;padding:20px}
main{padding:20px;max-width:1100px} table{border-collapse:collapse;width:100%} td{border:1px solid #ccc;padding:4px 8px}
.card{display:inline-block;width:30%;margin:1%;padding:10px;box-shadow:0 1px 4px #0003;border-radius:6px}`;

function page(i) {
  const changed = mode === 'test' && CHANGED.has(i);
  let head = '', top = '', extra = '';
  if (i >= 12 && i <= 15) {
    head = `<style>@keyframes spin{to{transform:rotate(360deg)}} @keyframes pulse{50%{opacity:.2}}
.spinner{width:48px;height:48px;border:6px solid #ccc;border-top-color:#36c;border-radius:50%;animation:spin 1s linear infinite}
.pulse{animation:pulse 1.2s ease-in-out infinite;background:#fc0;padding:8px}
.slide{display:inline-block;transition:transform 2s;transform:translateX(0)} .slide.go{transform:translateX(300px)}</style>`;
    top = `<div class=spinner></div><p class=pulse>Live: updating</p><div class=slide id=s>sliding panel</div>
<input id=q autofocus value="search"><script>requestAnimationFrame(()=>document.getElementById('s').classList.add('go'));
document.getElementById('q').focus();</script>`;
  }
  if (i >= 16 && i <= 18 && font) {
    head = `<style>@font-face{font-family:BenchSerif;src:url(/font.ttf?p=${i}) format("truetype");font-display:swap}
body{font-family:BenchSerif,sans-serif}</style>`;
  }
  if (i === 19) {
    extra = Array.from({ length: 6 }, (_, k) =>
      `<div style="height:500px"></div><img loading=lazy width=300 height=150 src="/img/${k}.svg">`).join('');
  }
  return `<!doctype html><html><head><meta charset=utf-8><title>Page ${i}</title><style>${BASE_CSS}</style>${head}</head>
<body>${body(i, changed, top)}${extra}</body></html>`;
}

http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  let m;
  if (req.method === 'POST' && (m = url.pathname.match(/^\/_mode\/(reference|test)$/))) {
    mode = m[1];
    res.writeHead(204); res.end(); return;
  }
  if ((m = url.pathname.match(/^\/page\/(\d+)$/)) && Number(m[1]) < 20) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page(Number(m[1]))); return;
  }
  if (url.pathname === '/font.ttf' && font) {
    setTimeout(() => { res.writeHead(200, { 'content-type': 'font/ttf' }); res.end(font); }, 300);
    return;
  }
  if ((m = url.pathname.match(/^\/img\/(\d)\.svg$/))) {
    res.writeHead(200, { 'content-type': 'image/svg+xml' });
    res.end(`<svg xmlns='http://www.w3.org/2000/svg' width='300' height='150'><rect width='300' height='150' fill='#${m[1]}9c'/></svg>`);
    return;
  }
  res.writeHead(404); res.end('not found');
}).listen(port, '127.0.0.1', () => console.error(`bench site on http://127.0.0.1:${port}/page/0..19`));
