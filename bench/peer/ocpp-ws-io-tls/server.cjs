'use strict';
// The shared harness's ocpp-ws-io server (peers/ocpp-ws-io/server.cjs) with its own TLS and
// compression options: securityProfile 2 + tls {cert, key} makes it listen on https.
const { splitArgs, readCert } = require('./common.cjs');
const { harness, rest, tls, deflate } = splitArgs(process.argv.slice(2));
const { requirePeer, parseArgs, emit } = harness;
const { OCPPServer } = requirePeer('ocpp-ws-io');

const args = parseArgs('server', rest);
const options = { protocols: ['ocpp1.6'], strictMode: !!args.strict, logging: false, compression: deflate };
if (tls) Object.assign(options, { securityProfile: 2, tls: readCert() });
const server = new OCPPServer(options);

server.on('client', (client) => {
  client.handle('ocpp1.6', 'BootNotification', () => ({
    status: 'Accepted', currentTime: new Date().toISOString(), interval: 300,
  }));
  client.handle('ocpp1.6', 'Heartbeat', () => ({ currentTime: new Date().toISOString() }));
  client.handle('ocpp1.6', 'MeterValues', () => ({}));
});

server.listen(args.port, args.host).then(() => emit({ event: 'ready', port: args.port, tls, deflate }));
process.on('SIGTERM', () => process.exit(0));
