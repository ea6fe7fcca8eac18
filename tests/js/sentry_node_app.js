// An application instrumented with the real @sentry/node (tests/js/package.json), configured with nothing
// but a DSN, a release and an environment: tests/test_sentry_js.py runs it with node against an agent.
//
//   node sentry_node_app.js   (env: SENTRY_DSN, SENTRY_RELEASE, SENTRY_ENVIRONMENT)
//
// It sends an exception with a chained cause, a message, a transaction with a child span, metrics
// (count, gauge, distribution), logs, a session and a cron check-in, flushes, and prints one JSON line:
// {"sdk": version, "sent": [{"types": [item types], "status": HTTP status}], "eventIds": {...}}.
// The SDK's own HTTP transport sends everything; recording_transport.js only records each answer's status.
'use strict';

const Sentry = require('@sentry/node');

const { recordingTransport } = require('./recording_transport');

const sent = [];

Sentry.init({
  dsn: process.env.SENTRY_DSN,
  release: process.env.SENTRY_RELEASE,
  environment: process.env.SENTRY_ENVIRONMENT,
  tracesSampleRate: 1.0,
  enableLogs: true,
  transport: recordingTransport(Sentry.makeNodeTransport, sent),
});

function divide(a, b) {
  if (b === 0) {
    throw new RangeError('division by zero');          // the cause is thrown here
  }
  return a / b;
}

function chargeCard(order) {
  try {
    return divide(order, 0);
  } catch (cause) {
    throw new Error(`charge failed for order ${order}`, { cause });    // the error the app raises
  }
}

async function main() {
  const eventIds = {};
  Sentry.setTag('feature', 'payment');
  Sentry.setUser({ id: 'user-42' });
  Sentry.startSession();

  try {
    chargeCard(42);
  } catch (error) {
    eventIds.exception = Sentry.captureException(error);
  }
  eventIds.message = Sentry.captureMessage('nightly export finished', 'warning');

  await Sentry.startSpan({ name: 'checkout', op: 'task' }, async () => {
    await Sentry.startSpan({ name: 'SELECT 1', op: 'db' }, async () => {
      await new Promise((resolve) => setTimeout(resolve, 5));
    });
  });

  if (Sentry.metrics) {
    Sentry.metrics.count('conversions', 2, { attributes: { plan: 'pro' } });
    Sentry.metrics.gauge('queue.depth', 7, { attributes: { queue: 'emails' } });
    Sentry.metrics.distribution('checkout.time', 250, { unit: 'millisecond' });
  }

  Sentry.logger.info(Sentry.logger.fmt`payment ${'p-1'} done`);
  Sentry.logger.warn('slow checkout');

  const checkInId = Sentry.captureCheckIn(
    { monitorSlug: 'nightly-export', status: 'in_progress' },
    { schedule: { type: 'crontab', value: '0 3 * * *' }, checkinMargin: 5, maxRuntime: 30, timezone: 'UTC' });
  Sentry.captureCheckIn({ checkInId, monitorSlug: 'nightly-export', status: 'ok', duration: 1.5 });

  Sentry.endSession();                                    // the session update (release health)

  await Sentry.flush(10000);
  await Sentry.close(10000);
  process.stdout.write(JSON.stringify({ sdk: Sentry.SDK_VERSION, sent, eventIds }) + '\n');
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack}\n`);
  process.exit(1);
});
