#!/bin/sh
# Stand-in for `npm ci` (builds in this demo may download nothing): slow, cacheable work that
# produces node_modules from package.json.
set -eu
mkdir -p node_modules/tiny-template
sed -n 's/.*"\(tiny-[a-z-]*\)": "\([0-9.]*\)".*/\1@\2/p' package.json > node_modules/.installed
sleep 2
echo "installed $(wc -l < node_modules/.installed) packages"
