// SPDX-License-Identifier: MIT
// A control for the benchmarks: a preloadable library that does nothing. Running a workload with
// LD_PRELOAD of this library measures what preloading any library costs (one more object in
// the link map, a different address-space layout), as opposed to what the shim's code costs.
int forksafe_bench_empty_preload;
