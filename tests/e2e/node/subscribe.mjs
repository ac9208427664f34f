// The stock graphql-ws client (npm), unmodified: subscribes, prints each result as one JSON
// line, exits after `count` results. Usage: node subscribe.mjs <ws-url> <token> <count>,
// with {"query": ..., "variables": ...} on stdin.
import { readFileSync } from "node:fs";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [url, token, count] = process.argv.slice(2);
const request = JSON.parse(readFileSync(0, "utf8"));
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { authorization: `Bearer ${token}` },
  retryAttempts: 0,
  on: { connected: () => console.log(JSON.stringify({ connected: true })) },
});
let received = 0;
const done = (code) => {
  client.dispose();
  process.exit(code);
};
client.subscribe(request, {
  next: (result) => {
    console.log(JSON.stringify(result));
    received += 1;
    if (received >= Number(count)) done(0);
  },
  error: (error) => {
    console.log(JSON.stringify({ error: String(error?.message ?? error) }));
    done(1);
  },
  complete: () => done(received >= Number(count) ? 0 : 1),
});
setTimeout(() => done(2), 60000);
