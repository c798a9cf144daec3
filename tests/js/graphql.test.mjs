// The Guild's GraphQL streaming clients against the gateway's /graphql: graphql-ws
// (graphql-transport-ws over a WebSocket, with `ws` in Node) and graphql-sse (distinct
// connections mode), as an Apollo or browser app would use them.
// GATEWAY_URL and GATEWAY_TOKEN come from tests/test_graphql_js.py.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient as createWsClient } from "graphql-ws";
import { createClient as createSseClient } from "graphql-sse";
import WebSocket from "ws";

const url = process.env.GATEWAY_URL;
const token = process.env.GATEWAY_TOKEN;

async function publish(channel, message) {
  const response = await fetch(url + "/", {
    method: "POST", headers: { Authorization: `Bearer ${token}` },
    body: JSON.stringify(["PUBLISH", channel, message]),
  });
  return (await response.json()).result;
}

/** Publishes until the subscription has received one message (it is confirmed by Redis
 * some time after the client subscribed); the messages it received. */
async function firstMessage(subscribe, channel) {
  const received = [];
  let done;
  const finished = new Promise((resolve, reject) => { done = { resolve, reject }; });
  const dispose = subscribe({
    next: (value) => { received.push(value); done.resolve(); },
    error: (err) => done.reject(err),
    complete: () => done.resolve(),
  });
  const deadline = Date.now() + 10_000;
  while (received.length === 0) {
    assert.ok(Date.now() < deadline, "no message arrived");
    await publish(channel, "hello, world");
    await Promise.race([finished, new Promise((r) => setTimeout(r, 50))]);
  }
  await dispose();
  return received;
}

const query = "subscription($c: [String!]!) { messages(channels: $c) { channel message } }";

test("graphql-ws: connection_init with the token, a subscription, a query", async () => {
  const client = createWsClient({ url: url.replace("http", "ws") + "/graphql",
                                  webSocketImpl: WebSocket,
                                  connectionParams: { Authorization: `Bearer ${token}` } });
  try {
    const channel = `js:ws:${Date.now()}`;
    const received = await firstMessage((sink) => client.subscribe(
      { query, variables: { c: [channel] } }, sink), channel);
    assert.deepEqual(received[0], { data: { messages: { channel, message: "hello, world" } } });
    const result = await new Promise((resolve, reject) => {
      client.subscribe({ query: '{ type(key: "js:none") }' },
                       { next: resolve, error: reject, complete: () => {} });
    });
    assert.deepEqual(result, { data: { type: "none" } });
  } finally {
    await client.dispose();
  }
});

test("graphql-sse: distinct connections, the token in a header", async () => {
  const client = createSseClient({ url: url + "/graphql", singleConnection: false,
                                   headers: { "x-api-key": token } });
  try {
    const channel = `js:sse:${Date.now()}`;
    const received = await firstMessage((sink) => client.subscribe(
      { query, variables: { c: [channel] } }, sink), channel);
    assert.deepEqual(received[0], { data: { messages: { channel, message: "hello, world" } } });
  } finally {
    client.dispose();
  }
});

test("graphql-ws: a refused token closes the connection 4403", async () => {
  const client = createWsClient({ url: url.replace("http", "ws") + "/graphql",
                                  webSocketImpl: WebSocket, retryAttempts: 0,
                                  connectionParams: { "x-api-key": "wrong" } });
  const closed = await new Promise((resolve) => {
    client.on("closed", (event) => resolve(event));
    client.subscribe({ query: "{ __typename }" },
                     { next: () => {}, error: () => {}, complete: () => {} });
  });
  assert.equal(closed.code, 4403);
  await client.dispose();
});
