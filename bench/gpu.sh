#!/usr/bin/env bash
# The one command of a lent GPU machine (see docs/BENCHMARKS.md, "burn-cuda's warm-up"):
# unpacks the carried release binary and runs bench/gpu.py on the carried sample.
# Prepare here first:  bench/gpu.sh --prepare   (strips and compresses target/release/pipe
# and copies the sample into .gpu/, which git ignores and the device call carries).
set -u
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--prepare" ]; then
    mkdir -p .gpu
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    strip -o .gpu/pipe target/release/pipe
    rm -f .gpu/pipe.xz && xz -6 -T2 .gpu/pipe && ls -la .gpu/pipe.xz
    rm -rf .gpu/cifar-10-sample && cp -r ../shared/data/cifar-10-sample .gpu/ && chmod -R u+w .gpu/cifar-10-sample
    exit 0
fi
OUT=${OUT:-/tmp/pipe-gpu-out}
mkdir -p /tmp/pipe-bin "$OUT"
python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('.gpu/pipe.xz'), open('/tmp/pipe-bin/pipe', 'wb'))"
chmod +x /tmp/pipe-bin/pipe
/tmp/pipe-bin/pipe --version || exit 1
export PYTHONUNBUFFERED=1
python3 bench/gpu.py --pipe /tmp/pipe-bin/pipe --data .gpu/cifar-10-sample --out "$OUT" "$@" 2>&1 | tee "$OUT/run.log"
