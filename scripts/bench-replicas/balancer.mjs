// A TCP round-robin balancer for the replica benchmark: node balancer.mjs PORT BACKEND_PORT…
// Each connection goes to the next backend that accepts it.
import net from 'node:net';

const [port, ...backends] = process.argv.slice(2).map(Number);
let next = 0;

function connect(client, tries) {
  const to = backends[next++ % backends.length];
  const upstream = net.connect(to, '127.0.0.1');
  let connected = false;
  upstream.once('connect', () => {
    connected = true;
    upstream.on('close', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  upstream.on('error', () => {
    // Refused: the next backend, while any is left untried.
    if (!connected && tries > 1) connect(client, tries - 1);
    else client.destroy();
  });
}

net.createServer((client) => { client.pause(); connect(client, backends.length); }).listen(port, '127.0.0.1');
