#!/bin/sh
# The frontend build: bundle src/ into dist/ and stamp the commit.
set -eu
version="${1:-unknown}"
mkdir -p dist
sed "s/__VERSION__/${version}/g" src/index.html > dist/index.html
cat src/*.js > dist/app.js
echo "built dist/ for ${version}"
