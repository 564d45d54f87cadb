#!/bin/sh
# Regenerate the committed seed corpora fuzz/corpus/<target>/ with
# fuzz/make_corpus.c (small valid .h5ad files, chunk-index files, filtered
# chunks).  Builds it in build-fuzz (clang, -DSCF_FUZZ=ON) unless BUILD says
# otherwise.  Old seeds are removed first; keep the total under 1 MB.
set -eu
cd "$(dirname "$0")/.."
build=${BUILD:-build-fuzz}
[ -f "$build/CMakeCache.txt" ] || CC=${CC:-clang} cmake -S . -B "$build" -DSCF_FUZZ=ON -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" --target make_corpus >/dev/null
rm -rf fuzz/corpus/fuzz_open fuzz/corpus/fuzz_h5chunks fuzz/corpus/fuzz_filters
"$build/make_corpus" fuzz/corpus
for d in fuzz/corpus/*/; do
	printf '%s: %s seeds, %s bytes\n' "$d" "$(ls "$d" | wc -l)" "$(cat "$d"* | wc -c)"
done
