#!/usr/bin/env bash
# Re-create presenting/vendor/ from the npm registry (needs npm; the decks themselves never do).
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent reveal.js@5.2.1 mathjax@3.2.2 >/dev/null)
check() {  # tarball, expected npm integrity
  got="sha512-$(openssl dgst -sha512 -binary "$1" | base64 -w0)"
  [[ "$got" == "$2" ]] || { echo "integrity mismatch for $1: $got" >&2; exit 1; }
}
check "$tmp/reveal.js-5.2.1.tgz" 'sha512-r7//6mIM5p34hFiDMvYfXgyjXqGRta+/psd9YtytsgRlrpRzFv4RbH76TXd2qD+7ZPZEbpBDhdRhJaFgfQ7zNQ=='
check "$tmp/mathjax-3.2.2.tgz" 'sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=='
mkdir -p "$tmp/r" "$tmp/m"
tar xzf "$tmp/reveal.js-5.2.1.tgz" -C "$tmp/r"; tar xzf "$tmp/mathjax-3.2.2.tgz" -C "$tmp/m"
R=$tmp/r/package M=$tmp/m/package
rm -rf reveal.js mathjax
mkdir -p reveal.js/dist/theme/fonts/source-sans-pro reveal.js/plugin/notes mathjax
cp "$R/LICENSE" reveal.js/
cp "$R/dist/reveal.js" "$R/dist/reveal.css" "$R/dist/reset.css" reveal.js/dist/
cp "$R/dist/theme/white.css" reveal.js/dist/theme/
cp "$R"/dist/theme/fonts/source-sans-pro/{LICENSE,source-sans-pro.css,*.woff} reveal.js/dist/theme/fonts/source-sans-pro/
cp "$R/plugin/notes/notes.js" reveal.js/plugin/notes/
cp "$M/LICENSE" mathjax/
cp "$M/es5/tex-svg-full.js" mathjax/
echo "presenting/vendor: reveal.js 5.2.1 and MathJax 3.2.2 in place"
