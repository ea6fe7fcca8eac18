// The real posthog-node against the agent, for tests/test_posthog_sdks.py: nothing but `host` points at the
// agent. Every request the SDK makes goes through its own fetch, wrapped to record the status.
//   POSTHOG_HOST=http://127.0.0.1:PORT POSTHOG_KEY=... node posthog_node_app.js
// prints one JSON line: {sent: [{url, status}], events: N}
'use strict';

const { PostHog } = require('posthog-node');

async function main() {
  const sent = [];
  const client = new PostHog(process.env.POSTHOG_KEY, {
    host: process.env.POSTHOG_HOST, flushAt: 20, maxBatchSize: 20, flushInterval: 0,
    fetch: async (url, options) => {
      const response = await fetch(url, options);
      sent.push({ url, status: response.status });
      return response;
    },
  });
  client.capture({ distinctId: 'node-user-1', event: 'cta_click', properties: { ctaId: 'node_cta', plan: 'pro' } });
  client.identify({ distinctId: 'node-user-1', properties: { plan: 'pro', role: 'coach' } });
  for (let i = 0; i < 45; i += 1) {                 // more than flushAt: several batches
    client.capture({ distinctId: `node-user-${i % 5}`, event: 'node_batch_event', properties: { n: i } });
  }
  await client.shutdown();
  process.stdout.write(JSON.stringify({ sent, events: 47 }) + '\n');
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack}\n`);
  process.exit(1);
});
