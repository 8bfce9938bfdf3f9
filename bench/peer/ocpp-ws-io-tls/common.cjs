'use strict';
// Our options (--bench-dir, --tls, --deflate) out of argv, the rest for the harness's parseArgs.
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

function splitArgs(argv) {
  const ours = { 'bench-dir': null, tls: '0', deflate: '0' };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].slice(2);
    if (key in ours) ours[key] = argv[++i];
    else rest.push(argv[i]);
  }
  const harness = require(path.join(ours['bench-dir'], 'common', 'node', 'harness.cjs'));
  return { harness, rest, tls: ours.tls === '1', deflate: ours.deflate === '1' };
}

function certDir() {
  return execFileSync(path.join(__dirname, '..', 'make_cert.sh')).toString().trim();
}

function readCert() {
  const dir = certDir();
  return { cert: fs.readFileSync(path.join(dir, 'cert.pem')), key: fs.readFileSync(path.join(dir, 'key.pem')) };
}

module.exports = { splitArgs, readCert };
