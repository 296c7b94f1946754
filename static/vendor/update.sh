#!/usr/bin/env bash
# Re-vendor the browser libraries of the Webcam tab's live mode from npm (run from the repository root).
#   ORT=1.30.0 MP=1.1.0 static/vendor/update.sh
# Neither npm package ships a LICENSE file: the licence texts are copied from their source repositories
# (microsoft/onnxruntime LICENSE, MIT; google-ai-edge/mediapipe LICENSE, Apache-2.0, as weights/ has it).
# The two .wasm files are over 10 MB (a Space refuses them without LFS): they are stored gzipped and
# static/live.js unpacks them in the browser (DecompressionStream).
set -euo pipefail
ORT=${ORT:-1.30.0}
MP=${MP:-1.1.0}
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "onnxruntime-web@$ORT" "@mediapipe/tasks-vision@$MP" >/dev/null
 mkdir ort mp && tar xzf "onnxruntime-web-$ORT.tgz" -C ort && tar xzf "mediapipe-tasks-vision-$MP.tgz" -C mp)
o="onnxruntime-web@$ORT" m="mediapipe-tasks-vision@$MP"
rm -rf onnxruntime-web@* mediapipe-tasks-vision@*
mkdir -p "$o" "$m"
# onnxruntime-web: the WebAssembly-only ES module, its Emscripten loader and the SIMD wasm (threaded
# build: the only one npm ships; without cross-origin isolation it runs on one thread)
cp "$work/ort/package/dist/ort.wasm.min.mjs" "$work/ort/package/dist/ort-wasm-simd-threaded.mjs" "$o/"
gzip -9 -n -c "$work/ort/package/dist/ort-wasm-simd-threaded.wasm" > "$o/ort-wasm-simd-threaded.wasm.gz"
cp "$work/ort/package/package.json" "$o/package.json"
# tasks-vision: the ES module bundle, the SIMD loader and wasm (every browser with WebAssembly SIMD)
cp "$work/mp/package/vision_bundle.mjs" "$work/mp/package/wasm/vision_wasm_internal.js" "$m/"
gzip -9 -n -c "$work/mp/package/wasm/vision_wasm_internal.wasm" > "$m/vision_wasm_internal.wasm.gz"
cp "$work/mp/package/package.json" "$m/package.json"
cat > "$o/LICENSE" <<'MIT'
MIT License

Copyright (c) 2018 - present Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
MIT
cp ../../weights/LICENSE_mediapipe_apache2.txt "$m/LICENSE"
du -b "$o"/* "$m"/* | sort -n
