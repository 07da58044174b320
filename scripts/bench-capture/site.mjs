// A 20-page local site for capture benchmarks: text, tables, inline SVG images, a web font-free
// layout of varying height. Serves on 127.0.0.1:PORT (default 8799) until killed.
import http from 'node:http';

const port = Number(process.argv[2] || 8799);
const lorem = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. ';

function page(i) {
  const rows = Array.from({ length: 10 + (i % 5) * 8 }, (_, r) =>
    `<tr><td>${r}</td><td>Item ${i}-${r}</td><td>${(r * 37 + i) % 1000}.00</td><td>${lorem.slice(0, 40 + (r % 30))}</td></tr>`).join('');
  const svg = (c) => `<svg xmlns='http://www.w3.org/2000/svg' width='240' height='120'><rect width='240' height='120' fill='${c}'/><circle cx='60' cy='60' r='40' fill='white'/></svg>`;
  const imgs = ['#3366cc', '#dc3912', '#ff9900', '#109618'].map(c =>
    `<img width=240 height=120 src="data:image/svg+xml,${encodeURIComponent(svg(c))}">`).join(' ');
  return `<!doctype html><html><head><title>Page ${i}</title><style>
body{font-family:sans-serif;margin:0;color:#222} header{background:#234;color:#fff;padding:24px}
main{padding:24px;max-width:1100px} table{border-collapse:collapse;width:100%} td{border:1px solid #ccc;padding:4px 8px}
.card{display:inline-block;width:30%;margin:1%;padding:12px;box-shadow:0 1px 4px #0003;border-radius:6px}
</style></head><body><header><h1>Report ${i}</h1><nav>Home · Reports · Settings</nav></header><main>
<p>${lorem.repeat(3 + (i % 4))}</p>${imgs}
<div>${Array.from({ length: 6 }, (_, k) => `<div class=card><h3>Card ${k}</h3><p>${lorem}</p></div>`).join('')}</div>
<table>${rows}</table><p>${lorem.repeat(2)}</p></main></body></html>`;
}

http.createServer((req, res) => {
  const m = req.url.match(/^\/page\/(\d+)$/);
  if (!m) { res.writeHead(404); res.end('not found'); return; }
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(page(Number(m[1])));
}).listen(port, '127.0.0.1', () => console.error(`site on http://127.0.0.1:${port}/page/0..19`));
