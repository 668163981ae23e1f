// Node flags every tuneloop process runs with (bin/tuneloop re-executes itself with them; bench/data.bench.ts
// gives them to its phase processes, so what it measures is what runs).
//
// V8 sizes the young generation for throughput: on a machine of this size each semispace grows to 64 MB, and a
// streaming job, which makes short-lived rows as fast as it can, grows them at once and keeps them: about 130 MB of
// resident memory that holds nothing. 16 MB semispaces keep the data plane's peak RSS at 1M interactions under
// 300 MB with no loss of speed measured (BENCHMARKS.md, "Data plane").
export const NODE_FLAGS = ['--max-semi-space-size=16'];
