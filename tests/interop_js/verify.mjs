// Verify Sigstore bundles with sigstore-js, an independent client (test tool only).
//
// It runs the pipeline that the npm package `sigstore` runs in `verify()`:
//   bundleFromJSON (@sigstore/bundle: parse + validate the bundle)
//   -> toSignedEntity (@sigstore/verify)
//   -> new Verifier(toTrustMaterial(trustedRoot, keyFinder), thresholds).verify(entity, policy)
// but with the trust material given on the command line instead of fetched through TUF
// (the `sigstore` package only gets its root from TUF and does not forward
// timestampThreshold, so it cannot verify an air-gapped key-based bundle; see
// docs/decisions/interop-js.md). The key finder is the one `sigstore`'s `keySelector`
// option builds: the given key for any hint, valid at any time.
//
// sigstore-js does not look inside a DSSE payload: this script also parses the in-toto
// statement and compares its subject digests with --digest / sha256(--artifact), as
// cosign does for images.
//
// Usage:
//   node verify.mjs --bundle B.json [--key pub.pem | --trusted-root root.json
//        --identity SAN --issuer URL] [--digest sha256:HEX | --artifact FILE]
//        [--tlog-threshold N] [--ctlog-threshold N] [--timestamp-threshold N]
//   node verify.mjs --batch jobs.json     (a JSON array of jobs with the same keys in
//                                          camelCase: bundle, key, trustedRoot, ...)
// --trusted-root takes a trusted_root.json or a ClientTrustConfig (its trustedRoot).
// A single job prints one JSON verdict; a batch prints a JSON array of verdicts.
// Exit code: 0 all verified, 1 some rejected, 2 bad usage.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { bundleFromJSON } = require('@sigstore/bundle');
const { crypto: coreCrypto } = require('@sigstore/core');
const { TrustedRoot } = require('@sigstore/protobuf-specs');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

// Versions as installed (protobuf-specs does not export its package.json: read the files).
const HERE = dirname(fileURLToPath(import.meta.url));
const VERSIONS = Object.fromEntries(
  ['@sigstore/verify', '@sigstore/bundle', '@sigstore/core', '@sigstore/protobuf-specs']
    .map((name) => [name,
      readJSON(join(HERE, 'node_modules', name, 'package.json')).version]));

const EMPTY_ROOT = {
  mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
  tlogs: [], certificateAuthorities: [], ctlogs: [], timestampAuthorities: [],
};

function readJSON(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}

function loadRoot(path) {
  if (!path) return TrustedRoot.fromJSON(EMPTY_ROOT);
  const doc = readJSON(path);
  // A ClientTrustConfig wraps the trusted root with a signing config.
  return TrustedRoot.fromJSON(doc.trustedRoot ?? doc);
}

function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function intNumber(value, fallback) {
  if (value === undefined || value === null) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`not a threshold: ${value}`);
  return n;
}

function expectedDigest(job) {
  if (job.digest) {
    const m = /^sha256:([0-9a-f]{64})$/.exec(job.digest);
    if (!m) throw new Error(`--digest must be sha256:<64 hex>, got ${job.digest}`);
    return m[1];
  }
  if (job.artifact) return createHash('sha256').update(readFileSync(job.artifact)).digest('hex');
  return null;
}

function statementOf(bundle) {
  if (bundle.content.$case !== 'dsseEnvelope') return null;
  const env = bundle.content.dsseEnvelope;
  const out = { payloadType: env.payloadType };
  try {
    const stmt = JSON.parse(Buffer.from(env.payload).toString('utf8'));
    out.type = stmt._type;
    out.predicateType = stmt.predicateType;
    out.subjectDigests = (stmt.subject || []).map((s) => (s.digest || {}).sha256)
      .filter(Boolean);
  } catch (e) {
    out.parseError = String(e.message || e);
    out.subjectDigests = [];
  }
  return out;
}

function verifyOne(job) {
  const verdict = {
    bundle: job.bundle, verified: false, signatureVerified: false, subjectMatches: null,
    error: null, versions: VERSIONS,
  };
  let keyObject = null;
  try {
    const thresholds = {
      tlogThreshold: intNumber(job.tlogThreshold, 1),
      ctlogThreshold: intNumber(job.ctlogThreshold, 1),
      timestampThreshold: intNumber(job.timestampThreshold, 1),
    };
    verdict.thresholds = thresholds;
    if (!job.bundle) throw new Error('no bundle given');
    if (Boolean(job.key) === Boolean(job.identity || job.issuer)) {
      throw new Error('give either a key or an identity and an issuer');
    }
    const raw = readJSON(job.bundle);
    const bundle = bundleFromJSON(raw); // throws ValidationError on a malformed bundle
    verdict.mediaType = bundle.mediaType;
    verdict.content = bundle.content.$case;
    verdict.verificationMaterial = bundle.verificationMaterial.content.$case;
    verdict.tlogEntries = bundle.verificationMaterial.tlogEntries.length;
    verdict.rfc3161Timestamps =
      bundle.verificationMaterial.timestampVerificationData?.rfc3161Timestamps?.length ?? 0;

    let keyFinder;
    if (job.key) {
      keyObject = coreCrypto.createPublicKey(readFileSync(job.key, 'utf8'));
      const spki = keyObject.export({ format: 'der', type: 'spki' });
      verdict.keyHint = createHash('sha256').update(spki).digest('base64');
      keyFinder = (hint) => {
        verdict.bundleHint = hint;
        verdict.hintMatchesKey = hint === verdict.keyHint;
        return { publicKey: keyObject, validFor: () => true };
      };
    }
    const root = loadRoot(job.trustedRoot);
    const verifier = new Verifier(toTrustMaterial(root, keyFinder), thresholds);
    const artifact = job.artifact ? readFileSync(job.artifact) : undefined;
    const entity = toSignedEntity(bundle, artifact);
    const policy = {};
    if (job.identity) policy.subjectAlternativeName = `^${escapeRegExp(job.identity)}$`;
    if (job.issuer) policy.extensions = { issuer: job.issuer };
    const signer = verifier.verify(entity, job.key ? undefined : policy);
    verdict.signatureVerified = true;
    verdict.signer = {
      subjectAlternativeName: signer.identity?.subjectAlternativeName ?? null,
      issuer: signer.identity?.extensions?.issuer ?? null,
    };

    const want = expectedDigest(job);
    const stmt = statementOf(bundle);
    verdict.statement = stmt;
    if (stmt) {
      if (stmt.payloadType !== 'application/vnd.in-toto+json' || stmt.parseError) {
        throw Object.assign(new Error('DSSE payload is not an in-toto statement'),
          { code: 'STATEMENT_ERROR' });
      }
      if (want !== null) {
        verdict.subjectMatches = stmt.subjectDigests.includes(want);
        if (!verdict.subjectMatches) {
          throw Object.assign(new Error(`statement subject ${stmt.subjectDigests.join(',')} `
            + `does not contain sha256:${want}`), { code: 'SUBJECT_ERROR' });
        }
      }
    } else if (want !== null) {
      // A message signature: toSignedEntity hashed the artifact, and the verifier
      // compared it with the bundle's messageDigest and checked the signature over it.
      verdict.subjectMatches = Boolean(artifact);
      if (!artifact) {
        throw Object.assign(new Error('a message-signature bundle needs --artifact'),
          { code: 'USAGE' });
      }
    }
    verdict.verified = true;
  } catch (e) {
    verdict.error = { name: e?.name ?? 'Error', code: e?.code ?? null,
      message: String(e?.message ?? e) };
  }
  return verdict;
}

function parseArgs(argv) {
  const job = {};
  const names = {
    '--bundle': 'bundle', '--key': 'key', '--trusted-root': 'trustedRoot',
    '--identity': 'identity', '--issuer': 'issuer', '--digest': 'digest',
    '--artifact': 'artifact', '--tlog-threshold': 'tlogThreshold',
    '--ctlog-threshold': 'ctlogThreshold', '--timestamp-threshold': 'timestampThreshold',
    '--batch': 'batch',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const name = names[argv[i]];
    if (!name || argv[i + 1] === undefined) throw new Error(`bad argument: ${argv[i]}`);
    job[name] = argv[i + 1];
  }
  return job;
}

function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`error: ${e.message}\n`);
    process.exit(2);
  }
  if (args.batch) {
    const jobs = readJSON(args.batch);
    if (!Array.isArray(jobs)) {
      process.stderr.write('error: the batch file must hold a JSON array of jobs\n');
      process.exit(2);
    }
    const verdicts = jobs.map(verifyOne);
    process.stdout.write(JSON.stringify(verdicts) + '\n');
    process.exit(verdicts.every((v) => v.verified) ? 0 : 1);
  }
  const verdict = verifyOne(args);
  process.stdout.write(JSON.stringify(verdict) + '\n');
  process.exit(verdict.verified ? 0 : 1);
}

main();
