# Shared helpers for benchmarks/run.d/* bash subcommands (sourced, not run).

# run_build TARGET...: configure BENCH_DIR once (Release, no tests) and build
# the given targets with at most 2 jobs (the machine is shared).
# BENCH_SKIP_BUILD=1 uses the binaries already in BENCH_DIR as they are.
run_build() {
  [[ "${BENCH_SKIP_BUILD:-0}" == 1 ]] && return 0
  if [[ ! -f "$BENCH_DIR/build.ninja" && ! -f "$BENCH_DIR/Makefile" ]]; then
    local gen=()
    command -v ninja > /dev/null && gen=(-G Ninja)
    cmake -S "$REPO" -B "$BENCH_DIR" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DMAILRETRY_BUILD_TESTS=OFF -DMAILRETRY_BUILD_BENCHMARKS=ON >&2
  fi
  cmake --build "$BENCH_DIR" -j 2 --target "$@" >&2
}
