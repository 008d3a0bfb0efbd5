// Loopback Fulcio + Rekor (v1) + RFC 3161 TSA for kitaudit's keyless signing tests.
//
// Test infrastructure only. It mounts the request handlers of the npm package
// @sigstore/mock (fresh keys on every start) behind one HTTP server on 127.0.0.1 and
// adapts the three requests sigstore-python sends to what those handlers expect:
//
//   * Fulcio  POST /api/v2/signingCert: the identity token arrives in
//     "Authorization: Bearer", the handler reads credentials.oidcIdentityToken from the
//     body; the CSR arrives base64-wrapped PEM, the handler wants the PEM.
//   * Rekor   POST /api/v1/log/entries: a proposed dsse entry
//     (spec.proposedContent.{envelope,verifiers}) is turned into the canonical body
//     (envelopeHash, payloadHash, signatures[{signature, verifier}]) the real Rekor
//     stores; hashedrekord entries pass unchanged.
//   * TSA     POST /api/v1/timestamp: the DER TimeStampReq is parsed with pkijs into the
//     JSON {artifactHash, hashAlgorithm, nonce, certificates} the handler wants.
//
// On start it prints ONE line of JSON to stdout: {"url": ..., "trustConfig": {...}}
// where trustConfig is a ClientTrustConfig (trusted root + signing config v0.2) that
// describes this server. It exits when stdin closes (so a dying test run never leaves
// it behind) or on SIGTERM.
'use strict';

const http = require('http');
const crypto = require('crypto');
const asn1js = require('asn1js');
const pkijs = require('pkijs');
const mock = require('@sigstore/mock');

const HASH_OIDS = {
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};

function b64(buf) {
  return Buffer.from(buf.buffer ? new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)
    : buf).toString('base64');
}

function adaptFulcio(body, headers) {
  const req = JSON.parse(body.toString('utf8'));
  const auth = headers.authorization || '';
  const token = auth.startsWith('Bearer ') ? auth.slice(7) : undefined;
  req.credentials = req.credentials || {};
  if (token && !req.credentials.oidcIdentityToken) {
    req.credentials.oidcIdentityToken = token;
  }
  const csr = req.certificateSigningRequest;
  if (typeof csr === 'string' && !csr.includes('-----BEGIN')) {
    req.certificateSigningRequest = Buffer.from(csr, 'base64').toString('utf8');
  }
  return JSON.stringify(req);
}

function sha256hex(data) {
  return crypto.createHash('sha256').update(data).digest('hex');
}

function adaptRekor(body) {
  const entry = JSON.parse(body.toString('utf8'));
  if (entry.kind !== 'dsse' || !entry.spec || !entry.spec.proposedContent) {
    return body.toString('utf8');
  }
  const pc = entry.spec.proposedContent;
  const envelopeJSON = typeof pc.envelope === 'string' ? pc.envelope : JSON.stringify(pc.envelope);
  const envelope = JSON.parse(envelopeJSON);
  const verifiers = pc.verifiers || [];
  const canonical = {
    apiVersion: entry.apiVersion || '0.0.1',
    kind: 'dsse',
    spec: {
      envelopeHash: { algorithm: 'sha256', value: sha256hex(Buffer.from(envelopeJSON, 'utf8')) },
      payloadHash: {
        algorithm: 'sha256',
        value: sha256hex(Buffer.from(envelope.payload, 'base64')),
      },
      signatures: envelope.signatures.map((s) => ({ signature: s.sig, verifier: verifiers[0] })),
    },
  };
  return JSON.stringify(canonical);
}

function adaptTSA(body) {
  const asn = asn1js.fromBER(new Uint8Array(body).buffer);
  if (asn.offset === -1) throw new Error('TSA request is not DER');
  const req = new pkijs.TimeStampReq({ schema: asn.result });
  const algo = HASH_OIDS[req.messageImprint.hashAlgorithm.algorithmId];
  if (!algo) throw new Error('unsupported hash algorithm in TSA request');
  const out = {
    artifactHash: Buffer.from(req.messageImprint.hashedMessage.valueBlock.valueHexView)
      .toString('base64'),
    hashAlgorithm: algo,
    certificates: Boolean(req.certReq),
  };
  if (req.nonce) {
    const n = req.nonce.valueBlock.valueDec;
    if (Number.isSafeInteger(n) && n > 0) out.nonce = n;
  }
  return JSON.stringify(out);
}

function keyPair() {
  return crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
}

async function main() {
  const caKey = keyPair();
  const ctKey = keyPair();
  const tlogKey = keyPair();
  const tsaKey = keyPair();

  const server = http.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;

  const ctlog = await mock.initializeCTLog(ctKey);
  const ca = await mock.initializeCA(caKey, ctlog);
  const tlog = await mock.initializeTLog(url, tlogKey);
  const tsa = await mock.initializeTSA(tsaKey);

  const routes = {
    '/api/v2/signingCert': { handler: mock.fulcioHandler(ca), adapt: adaptFulcio },
    '/api/v1/log/entries': { handler: mock.rekorHandler(tlog), adapt: adaptRekor },
    '/api/v1/timestamp': { handler: mock.tsaHandler(tsa), adapt: adaptTSA },
  };

  server.on('request', (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const route = routes[req.url.split('?')[0]];
      if (req.method !== 'POST' || !route) {
        res.writeHead(404, { 'Content-Type': 'text/plain' });
        res.end('not found');
        return;
      }
      try {
        const adapted = route.adapt(Buffer.concat(chunks), req.headers);
        const { statusCode, response, contentType } = await route.handler.fn(adapted);
        res.writeHead(statusCode, { 'Content-Type': contentType || 'text/plain' });
        res.end(typeof response === 'string' ? response
          : Buffer.from(response.buffer, response.byteOffset, response.byteLength));
      } catch (e) {
        res.writeHead(400, { 'Content-Type': 'text/plain' });
        res.end(String(e && e.message ? e.message : e));
      }
    });
  });

  const start = new Date(Date.now() - 60_000).toISOString();
  const spki = (k) => k.publicKey.export({ format: 'der', type: 'spki' });
  const tlogSpki = spki(tlogKey);
  const ctSpki = spki(ctKey);
  const pubKey = (der) => ({
    rawBytes: der.toString('base64'),
    keyDetails: 'PKIX_ECDSA_P256_SHA_256',
    validFor: { start },
  });
  const trustedRoot = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [{
      baseUrl: url,
      hashAlgorithm: 'SHA2_256',
      publicKey: pubKey(tlogSpki),
      logId: { keyId: crypto.createHash('sha256').update(tlogSpki).digest('base64') },
    }],
    certificateAuthorities: [{
      subject: { organization: 'sigstore-mock', commonName: 'fulcio' },
      uri: url,
      certChain: { certificates: [{ rawBytes: b64(ca.rootCertificate) }] },
      validFor: { start },
    }],
    ctlogs: [{
      baseUrl: url,
      hashAlgorithm: 'SHA2_256',
      publicKey: pubKey(ctSpki),
      logId: { keyId: crypto.createHash('sha256').update(ctSpki).digest('base64') },
    }],
    timestampAuthorities: [{
      subject: { organization: 'sigstore-mock', commonName: 'tsa' },
      uri: `${url}/api/v1/timestamp`,
      certChain: {
        certificates: [{ rawBytes: b64(tsa.intCertificate) }, { rawBytes: b64(tsa.rootCertificate) }],
      },
      validFor: { start },
    }],
  };
  const service = (u, major) => ({
    url: u, majorApiVersion: major, validFor: { start }, operator: 'sigstore-mock',
  });
  const signingConfig = {
    mediaType: 'application/vnd.dev.sigstore.signingconfig.v0.2+json',
    caUrls: [service(url, 1)],
    oidcUrls: [service(url, 1)],
    rekorTlogUrls: [service(url, 1)],
    tsaUrls: [service(`${url}/api/v1/timestamp`, 1)],
    rekorTlogConfig: { selector: 'ANY' },
    tsaConfig: { selector: 'ANY' },
  };
  const trustConfig = {
    mediaType: 'application/vnd.dev.sigstore.clienttrustconfig.v0.1+json',
    trustedRoot,
    signingConfig,
  };
  process.stdout.write(JSON.stringify({ url, trustConfig }) + '\n');

  const stop = () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 500).unref();
  };
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);
  process.stdin.resume();
  process.on('SIGTERM', stop);
}

main().catch((e) => {
  process.stderr.write(`sigstore mock failed to start: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
