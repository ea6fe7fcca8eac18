// The real posthog-node's feature flags against the agent, for tests/test_flags_js.py: nothing but `host` (and,
// for local evaluation, `personalApiKey`) points at the agent.
//   node posthog_flags_node.js SPEC.json
// SPEC: {host, key, personalApiKey, remote: [{call, key, distinctId, options}],
//        local: {flags: [key, ...], cases: [{distinctId, personProperties, groups, groupProperties}]}}
// Remote: each call (isFeatureEnabled, getFeatureFlag, getFeatureFlagPayload) asks the agent's /flags
// (and sends its $feature_flag_called events). Local: a client with the personal API key loads the agent's
// definitions once (/flags/definitions) and evaluates every flag for every case itself (onlyEvaluateLocally,
// no events). Prints one JSON line: {remote: [value], local: [{flag: value}], localReady, sent: [{url, status}]}
// (undefined, i.e. inconclusive or no answer, is written as null).
'use strict';

const fs = require('fs');
const { PostHog } = require('posthog-node');

function recordingFetch(sent) {
  return async (url, options) => {
    const response = await fetch(url, options);
    sent.push({ url: String(url), status: response.status });
    return response;
  };
}

const value = (v) => (v === undefined ? null : v);

async function main() {
  const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const sent = [];
  const remote = new PostHog(spec.key, { host: spec.host, flushAt: 1, flushInterval: 0, fetch: recordingFetch(sent) });
  const remoteResults = [];
  for (const call of spec.remote) {
    if (call.call === 'getFeatureFlagPayload') {
      remoteResults.push(value(await remote.getFeatureFlagPayload(call.key, call.distinctId, undefined, call.options)));
    } else {
      remoteResults.push(value(await remote[call.call](call.key, call.distinctId, call.options)));
    }
  }
  await remote.shutdown();

  const local = new PostHog(spec.key, { host: spec.host, personalApiKey: spec.personalApiKey,
                                        featureFlagsPollingInterval: 600000, flushAt: 1, flushInterval: 0,
                                        fetch: recordingFetch(sent) });
  const localReady = await local.waitForLocalEvaluationReady(15000);
  const localResults = [];
  for (const c of spec.local.cases) {
    const answers = {};
    for (const key of spec.local.flags) {
      answers[key] = value(await local.getFeatureFlag(key, c.distinctId, {
        personProperties: c.personProperties, groups: c.groups, groupProperties: c.groupProperties,
        onlyEvaluateLocally: true, sendFeatureFlagEvents: false }));
    }
    localResults.push(answers);
  }
  await local.shutdown();
  process.stdout.write(JSON.stringify({ remote: remoteResults, local: localResults, localReady, sent }) + '\n');
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack}\n`);
  process.exit(1);
});
