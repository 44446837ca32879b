#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 15), starting from the corpus kept in
# fuzz/corpus/<target>; what a run discovers goes to a temporary directory, so the
# repository's corpus changes only when you copy inputs in on purpose. A crash leaves its
# input in fuzz/artifacts/<target>/ and fails the run.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# cargo-fuzz needs a nightly compiler's flags; the stable toolchain takes them with
# RUSTC_BOOTSTRAP=1 (its sanitizer runtimes ship with the standard library).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-15}
shift || true
case "$seconds" in ''|*[!0-9]*) echo "fuzz/run.sh: SECONDS must be a whole number, not \"$seconds\"" >&2; exit 2 ;; esac
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz (missing)"
  cargo install cargo-fuzz --quiet --locked
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode_body json_patch merge_patch strategic_merge server_side_apply selectors)
export RUSTC_BOOTSTRAP=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "==> building the fuzz targets"
cargo fuzz build --release -s address >/dev/null 2>"$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  echo "==> fuzzing $t for ${seconds}s"
  if ! cargo fuzz run --release -s address "$t" "$work/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$work/$t.log" 2>&1; then
    tail -40 "$work/$t.log" >&2
    echo "fuzz/run.sh: $t failed; its input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E "stat::number_of_executed_units|stat::new_units_added" "$work/$t.log" | tr '\n' ' ' | sed 's/^/    /'; echo
done
echo "fuzzing: ${#targets[@]} targets, ${seconds}s each, no crash"
