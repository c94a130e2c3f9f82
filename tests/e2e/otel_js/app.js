// OTel JS SDK peer: node app.js <http base url> <json|proto> <service name>
// Sends spans, log records and metrics through the SDK's own OTLP/HTTP exporters and prints what
// it sent (ids, names) as one JSON line, so the test can compare with what Sirius stored.
'use strict';

const api = require('@opentelemetry/api');
const { SeverityNumber } = require('@opentelemetry/api-logs');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { BasicTracerProvider, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { LoggerProvider, SimpleLogRecordProcessor } = require('@opentelemetry/sdk-logs');
const { MeterProvider, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');

const [base, protocol, serviceName] = process.argv.slice(2);
const pkg = protocol === 'proto' ? 'proto' : 'http';
const { OTLPTraceExporter } = require(`@opentelemetry/exporter-trace-otlp-${pkg}`);
const { OTLPLogExporter } = require(`@opentelemetry/exporter-logs-otlp-${pkg}`);
const { OTLPMetricExporter } = require(`@opentelemetry/exporter-metrics-otlp-${pkg}`);

const resource = resourceFromAttributes({
  'service.name': serviceName,
  'service.instance.id': `${serviceName}-${process.pid}`,
  'host.name': 'js-host',
});

async function main() {
  const tracerProvider = new BasicTracerProvider({
    resource,
    spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${base}/v1/traces` }))],
  });
  const tracer = tracerProvider.getTracer('js.peer', '1.0.0');
  const sent = { spans: [], logs: [], traceId: null };
  const root = tracer.startSpan('GET /checkout', { kind: api.SpanKind.SERVER, attributes: { 'http.route': '/checkout' } });
  const ctx = api.trace.setSpan(api.context.active(), root);
  for (const name of ['load cart', 'charge card']) {
    const child = tracer.startSpan(name, { attributes: { 'step.index': sent.spans.length } }, ctx);
    if (name === 'charge card') child.setStatus({ code: api.SpanStatusCode.ERROR, message: 'declined' });
    child.end();
    sent.spans.push({ name, spanId: child.spanContext().spanId });
  }
  root.end();
  sent.spans.push({ name: 'GET /checkout', spanId: root.spanContext().spanId });
  sent.traceId = root.spanContext().traceId;

  const loggerProvider = new LoggerProvider({
    resource,
    processors: [new SimpleLogRecordProcessor({ exporter: new OTLPLogExporter({ url: `${base}/v1/logs` }) })],
  });
  const logger = loggerProvider.getLogger('js.peer.logs');
  for (const [body, severityNumber] of [['cart loaded', SeverityNumber.INFO], ['card declined', SeverityNumber.ERROR]]) {
    logger.emit({ body, severityNumber, attributes: { 'order.id': 42 } });
    sent.logs.push(body);
  }

  const meterProvider = new MeterProvider({
    resource,
    readers: [
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter({ url: `${base}/v1/metrics` }),
        exportIntervalMillis: 3600000,
      }),
    ],
  });
  const meter = meterProvider.getMeter('js.peer.metrics');
  meter.createCounter('checkout.requests').add(3, { route: '/checkout' });
  meter.createHistogram('checkout.duration', { unit: 'ms' }).record(12.5);

  await tracerProvider.forceFlush();
  await loggerProvider.forceFlush();
  await meterProvider.forceFlush();
  await Promise.all([tracerProvider.shutdown(), loggerProvider.shutdown(), meterProvider.shutdown()]);
  process.stdout.write(JSON.stringify(sent) + '\n');
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
