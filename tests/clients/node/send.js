// Sends one small trace to skein with the unmodified Node `jaeger-client`,
// the way an application instrumented with it would.
//
// Usage: node send.js <udp|http> <host:port> <service name>
//   udp   the client's UDPSender: an Agent.emitBatch datagram, Thrift binary
//         protocol (thriftrw has no compact protocol, which is why Node
//         clients talk to the agent's 6832 port, not 6831)
//   http  the client's HTTPSender: POST /api/traces, Thrift binary Batch
//
// Prints the trace ID (lowercase hex, 16 characters for the UDP run's 64-bit
// ID, 32 for the HTTP run's 128-bit ID) on stdout and exits 0 once the
// spans were handed to the socket or the collector answered; exits 1 if
// the client reported any error.
'use strict';

const { initTracer, opentracing } = require('jaeger-client');

const [transport, address, service] = process.argv.slice(2);
if (!['udp', 'http'].includes(transport) || !address || !service) {
  console.error('usage: node send.js <udp|http> <host:port> <service name>');
  process.exit(2);
}
const colon = address.lastIndexOf(':');
const host = address.slice(0, colon);
const port = Number(address.slice(colon + 1));

const logger = {
  info(msg) {
    console.error(`jaeger-client: ${msg}`);
  },
  error(msg) {
    console.error(`jaeger-client error: ${msg}`);
    process.exitCode = 1;
  },
};

const reporter =
  transport === 'http'
    ? { collectorEndpoint: `http://${address}/api/traces` }
    : { agentHost: host, agentPort: port };

const tracer = initTracer(
  {
    serviceName: service,
    // A constant sampler: the default (remote) one would poll an agent.
    sampler: { type: 'const', param: 1 },
    reporter: { ...reporter, flushIntervalMs: 60000 },
  },
  {
    logger,
    tags: { 'deployment.stage': 'test', 'build.number': 7 },
    traceId128bit: transport === 'http',
  },
);

const parent = tracer.startSpan('checkout', {
  tags: { 'span.kind': 'server', 'http.method': 'POST' },
});
const child = tracer.startSpan('load-cart', { childOf: parent });
child.setTag('span.kind', 'client');
child.setTag('cart.owner', 'alice');
child.setTag('cart.items', 3);
child.setTag('cart.total', 12.5);
child.setTag('cart.cached', false);
child.setTag('error', true);
child.log({ event: 'cache-miss', key: 'cart:alice', attempts: 2 });
child.finish();
const receipt = tracer.startSpan('send-receipt', {
  references: [opentracing.followsFrom(parent.context())],
});
receipt.setTag('receipt.bytes', Buffer.from([0, 1, 2, 255]));
receipt.finish();
parent.finish();

const traceId = parent.context().traceId.toString('hex');
tracer.close(() => {
  console.log(traceId);
});
