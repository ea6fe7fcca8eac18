// An application instrumented with the real @opentelemetry/sdk-node (tests/js/package.json), configured only
// by the standard environment, as a deployment would: tests/test_otlp_receiver_sdk.py runs it with node
// against an agent's OTLP receiver.
//
//   node otel_node_app.js   (env: OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME,
//                            OTEL_TRACES_EXPORTER=otlp, OTEL_METRICS_EXPORTER=otlp, OTEL_LOGS_EXPORTER=otlp,
//                            OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, http/json or grpc)
//
// NodeSDK builds its exporters from those variables (over HTTP with their default paths /v1/traces,
// /v1/metrics, /v1/logs appended to the endpoint; OTLP JSON with hex ids for http/json). The app makes a server span with a child
// client span that fails, three times; two log records; a counter; then shuts the SDK down (which flushes
// every signal) and prints one JSON line: {"spans": [{"traceId", "spanId", "name"}...]}.
'use strict';

const { NodeSDK } = require('@opentelemetry/sdk-node');
const api = require('@opentelemetry/api');
const { logs, SeverityNumber } = require('@opentelemetry/api-logs');

async function main() {
  const sdk = new NodeSDK({ instrumentations: [] });
  sdk.start();
  const tracer = api.trace.getTracer('shop.node');
  const spans = [];
  for (let i = 0; i < 3; i++) {
    tracer.startActiveSpan('GET /basket', { kind: api.SpanKind.SERVER, attributes: { 'http.route': '/basket', i } },
      (server) => {
        const client = tracer.startSpan('redis GET', { kind: api.SpanKind.CLIENT });
        client.setStatus({ code: api.SpanStatusCode.ERROR, message: 'timeout' });
        client.end();
        server.end();
        for (const span of [server, client]) {
          const context = span.spanContext();
          spans.push({ traceId: context.traceId, spanId: context.spanId, name: span.name });
        }
      });
  }
  const logger = logs.getLogger('shop.node');
  logger.emit({ severityNumber: SeverityNumber.INFO, severityText: 'INFO', body: 'basket viewed' });
  logger.emit({ severityNumber: SeverityNumber.ERROR, severityText: 'ERROR', body: 'redis timeout' });
  api.metrics.getMeter('shop.node').createCounter('baskets').add(2, { region: 'eu' });
  await sdk.shutdown();
  process.stdout.write(JSON.stringify({ spans }) + '\n');
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
