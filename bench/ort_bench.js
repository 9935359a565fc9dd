#!/usr/bin/env node
// Benchmarks onnxruntime-node (CPU) on an ONNX model with a random float32 input batch.
//
//   node bench/ort_bench.js MODEL.onnx --batch N --threads T --seconds S [--shape C,H,W] [--json]
//
// Prints the median and p90 latency of one batch and the throughput (batch / median).
// --json prints one object {"batch","threads","median_ms","p90_ms","images_per_s"}.
'use strict';

const ort = require('onnxruntime-node');

const WARMUP_RUNS = 10;
const MAX_RUNS = 100000;
const USAGE =
  'usage: ort_bench.js MODEL.onnx --batch N --threads T --seconds S [--shape C,H,W] [--json]';

// Parses the command line; exits with the usage text on any error.
function parseArgs(argv) {
  const args = { batch: 1, threads: 1, seconds: 3, shape: null, json: false, model: null };
  const fail = (msg) => {
    console.error(`ort_bench: ${msg}\n${USAGE}`);
    process.exit(2);
  };
  const positive = (name, text, integer) => {
    const v = Number(text);
    if (!(v > 0) || (integer && !Number.isInteger(v))) fail(`bad value for ${name}: ${text}`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => (i + 1 < argv.length ? argv[++i] : fail(`${a} needs a value`));
    if (a === '--batch') args.batch = positive(a, value(), true);
    else if (a === '--threads') args.threads = positive(a, value(), true);
    else if (a === '--seconds') args.seconds = positive(a, value(), false);
    else if (a === '--shape') args.shape = value().split(',').map((d) => positive(a, d, true));
    else if (a === '--json') args.json = true;
    else if (a === '-h' || a === '--help') {
      console.log(USAGE);
      process.exit(0);
    }
    else if (a.startsWith('--') || args.model !== null) fail(`unexpected argument ${a}`);
    else args.model = a;
  }
  if (args.model === null) fail('missing MODEL.onnx');
  return args;
}

// Per-image input dims (batch excluded): from the session's metadata, else from --shape.
function inputDims(session, shapeArg) {
  const meta = session.inputMetadata && session.inputMetadata[0];
  if (meta && meta.isTensor && meta.shape.length > 1) {
    const dims = meta.shape.slice(1);
    if (dims.every((d) => typeof d === 'number' && d > 0)) return dims;
  }
  if (shapeArg) return shapeArg;
  throw new Error('input shape not in the model metadata: pass --shape C,H,W');
}

// Deterministic pseudo-random floats in [-1, 1) (mulberry32).
function randomFloats(n, seed) {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 2147483648 - 1;
  }
  return out;
}

// Value at quantile q (0..1) of an ascending array, linear interpolation between ranks.
function quantile(sorted, q) {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const session = await ort.InferenceSession.create(args.model, {
    intraOpNumThreads: args.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  });
  const dims = [args.batch, ...inputDims(session, args.shape)];
  const size = dims.reduce((a, b) => a * b, 1);
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', randomFloats(size, 1), dims) };

  for (let i = 0; i < WARMUP_RUNS; i++) await session.run(feeds);

  const times = [];
  const deadline = process.hrtime.bigint() + BigInt(Math.round(args.seconds * 1e9));
  while (times.length < MAX_RUNS) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    const t1 = process.hrtime.bigint();
    times.push(Number(t1 - t0) / 1e6);
    if (t1 >= deadline) break;
  }
  await session.release();

  times.sort((a, b) => a - b);
  const median = quantile(times, 0.5);
  const p90 = quantile(times, 0.9);
  const result = {
    batch: args.batch,
    threads: args.threads,
    median_ms: Number(median.toFixed(4)),
    p90_ms: Number(p90.toFixed(4)),
    images_per_s: Number(((args.batch * 1000) / median).toFixed(1)),
  };
  if (args.json) {
    console.log(JSON.stringify(result));
  } else {
    console.log(`onnxruntime-node ${ort.env.versions ? ort.env.versions.common : ''} ` +
      `${args.model}: input [${dims.join(', ')}], ${times.length} runs`);
    console.log(`batch ${result.batch}, threads ${result.threads}: ` +
      `median ${result.median_ms} ms, p90 ${result.p90_ms} ms, ${result.images_per_s} images/s`);
  }
}

main().catch((e) => {
  console.error(`ort_bench: ${e.message}`);
  process.exit(1);
});
