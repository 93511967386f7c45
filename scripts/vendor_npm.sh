#!/usr/bin/env bash
# Refresh the page's vendored npm packages (served by `fraudstream serve` with no build step,
# no CDN and no internet): the country borders of the offline basemap, the TopoJSON reader
# that turns them into GeoJSON in the page, and the chart library.
#
#   scripts/vendor_npm.sh
#
# Each package is fetched with `npm pack` at the pinned version below and its tarball checked
# against the pinned sha512 integrity (the npm registry's `dist.integrity`) before anything is
# copied; a mismatch stops the script. The chosen files and the package's licence go to
# src/fraudstream/web/static/vendor/<name>/ with a VERSION file. Commit the result.
# To move a pin: `npm view <name>@<version> dist.integrity`, then edit PINS. Leaflet has its
# own script (scripts/vendor_leaflet.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
vendor="$root/src/fraudstream/web/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# name version integrity files (paths inside the package, space separated)
PINS=(
  "world-atlas|2.0.2|sha512-IXfV0qwlKXpckz1FhwXVwKRjiIhOnWttOskm5CtxMsjgE/MXAYRHWJqgXOpM8IkcPBoXnyTU5lFHcYa5ChG0LQ==|countries-50m.json LICENSE"
  "topojson-client|3.1.0|sha512-605uxS6bcYxGXw9qi62XyrV6Q3xwbndjachmNxu8HWTtVPxZfEJN9fd/SZS1Q54Sn2y0TMyMxFj/cJINqGHrKw==|dist/topojson-client.min.js LICENSE"
  "uplot|1.6.32|sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==|dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE"
)

for pin in "${PINS[@]}"; do
  IFS='|' read -r name version integrity files <<<"$pin"
  tarball="$work/$name-$version.tgz"
  (cd "$work" && npm pack --silent "$name@$version" >/dev/null)
  actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  if [[ "$actual" != "$integrity" ]]; then
    echo "error: $name@$version: integrity $actual, pinned $integrity" >&2
    exit 1
  fi
  mkdir -p "$work/$name"
  tar xzf "$tarball" -C "$work/$name"
  target="$vendor/$name"
  rm -rf "$target"
  mkdir -p "$target"
  for file in $files; do
    cp "$work/$name/package/$file" "$target/"
  done
  printf '%s\n%s\n' "$version" "$integrity" >"$target/VERSION"
  echo "vendored $name $version into $target"
done
