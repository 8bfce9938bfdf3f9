'use strict';
// The shared harness's ocpp-ws-io client (peers/ocpp-ws-io/client.cjs) with TLS (wss://,
// securityProfile 2, the server's self-signed certificate as CA) and compression options.
const { splitArgs, readCert } = require('./common.cjs');
const { harness, rest, tls, deflate } = splitArgs(process.argv.slice(2));
const { requirePeer, parseArgs, drive, actionAndPayload } = harness;
const { OCPPClient } = requirePeer('ocpp-ws-io');

const args = parseArgs('client', rest);
const [action, payload] = actionAndPayload(args.msg);
const ca = tls ? readCert().cert : null;

async function connect(i) {
  const options = {
    endpoint: `${tls ? 'wss' : 'ws'}://${args.host}:${args.port}`,
    identity: `CP-${i}`,
    protocols: ['ocpp1.6'],
    strictMode: !!args.strict,
    callConcurrency: args.inflight,
    reconnect: false,
    logging: false,
    compression: deflate,
  };
  if (tls) Object.assign(options, { securityProfile: 2, tls: { ca } });
  const client = new OCPPClient(options);
  await client.connect();
  return client;
}

drive(args, {
  connect,
  makeCall: (client) => () => client.call('ocpp1.6', action, payload),
  close: (client) => client.close(),
  extra: (conns) => ({
    subprotocol: conns[0].protocol,
    extensions: conns[0]._ws ? String(conns[0]._ws.extensions) : '',
  }),
}).then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
