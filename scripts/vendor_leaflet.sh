#!/usr/bin/env bash
# Refresh the vendored Leaflet (served by `fraudstream serve` with no build step and no CDN).
#
#   scripts/vendor_leaflet.sh [version]     (default 1.9.4)
#
# Downloads the package with `npm pack` (the npm registry, checksum-verified by npm), and copies
# dist/leaflet.js, dist/leaflet.css, dist/images/ and LICENSE into
# src/fraudstream/web/static/vendor/leaflet/. Commit the result.
set -euo pipefail
version="${1:-1.9.4}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="$root/src/fraudstream/web/static/vendor/leaflet"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "leaflet@$version" >/dev/null && tar xzf "leaflet-$version.tgz")
rm -rf "$target"
mkdir -p "$target/images"
cp "$work/package/dist/leaflet.js" "$work/package/dist/leaflet.css" "$work/package/LICENSE" "$target/"
cp "$work/package/dist/images/"*.png "$target/images/"
echo "$version" >"$target/VERSION"
echo "vendored leaflet $version into $target"
