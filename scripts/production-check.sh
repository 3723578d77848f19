#!/usr/bin/env bash
# The production tree, as the Dockerfile makes it: the lockfile installed with `npm ci --omit=dev` into an empty
# folder, the compiled runtime and service copied in (no TypeScript source, no dev dependency, no `weft-source`
# condition), started with plain `node dist/cli/weft.js start`. An image and a CSV are uploaded and both processed,
# then SIGTERM must stop it with exit code 0. Where a docker daemon answers, the image is built and checked the same
# way; where none does, this says so. Then `npm pack` is installed into an empty project, where `npx weft start
# app.js` must serve and stop cleanly. Run by .ci/run after the build; `npm run build` first when run by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
node_bin=$(npm exec --offline -- node -p process.execPath)
work=$(mktemp -d)
pid=""
cleanup() {
  # Each service runs in a process group of its own (setsid): the whole group goes, whatever stood in front.
  if [ -n "$pid" ]; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "production check: $*" >&2
  [ -f "$work/service.log" ] && tail -n 40 "$work/service.log" >&2
  exit 1
}

# A TCP port free on loopback now.
free_port() {
  "$node_bin" -e "const s = require('node:net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close(); })"
}

# Polls `$1` (a shell condition) every 0.2 s for up to `$2` seconds.
wait_for() {
  local deadline=$((SECONDS + $2))
  until eval "$1"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

[ -f dist/cli/weft.js ] && [ -f apps/files/dist/server.js ] || fail "dist/ is missing: run npm run build first"

app=$work/app
mkdir -p "$app/apps/files"
cp package.json package-lock.json "$app/"
cp apps/files/package.json "$app/apps/files/"
(cd "$app" && npm ci --omit=dev --no-audit --no-fund --loglevel=error)
cp -r dist "$app/dist"
cp -r apps/files/dist "$app/apps/files/dist"
cp apps/files/weft.config.mjs "$app/apps/files/"
for dev in typescript @biomejs/biome node playwright-core s3rver piscina; do
  [ ! -e "$app/node_modules/$dev" ] || fail "a dev dependency was installed: $dev"
done
[ -z "$(find "$app/dist" "$app/apps/files/dist" -name '*.ts' ! -name '*.d.ts' | head -n 1)" ] || fail "TypeScript source in dist/"

port=$(free_port)
base="http://127.0.0.1:$port"
(
  cd "$app"
  PORT=$port FILES_DATA_DIR="$work/data" WEFT_RUNTIME_DIR="$work/run" NODE_ENV=production \
    exec setsid "$node_bin" dist/cli/weft.js start apps/files/dist/server.js --config apps/files/weft.config.mjs \
    --name prodcheck --workers 2
) >"$work/service.log" 2>&1 &
pid=$!
wait_for "curl -fsS -o /dev/null $base/health/ready 2>/dev/null" 60 || fail "not ready within 60 s"

(cd "$app" && "$node_bin" -e "require('sharp')({ create: { width: 1200, height: 800, channels: 3, background: '#c84' } }).jpeg().toFile('$work/photo.jpg')")
printf 'name,age\nann,31\nbob,27\n' >"$work/people.csv"
ids=()
for f in photo.jpg people.csv; do
  answer=$(curl -fsS -T "$work/$f" "$base/files?name=$f") || fail "uploading $f failed"
  ids+=("$("$node_bin" -p "JSON.parse(process.argv[1]).id" "$answer")")
done
processed() {
  local state
  state=$(curl -fsS "$base/files/$1" | "$node_bin" -p "const f = JSON.parse(require('node:fs').readFileSync(0, 'utf8')); f.jobs.length > 0 && f.jobs.every((j) => j.state === 'completed')")
  [ "$state" = true ]
}
for id in "${ids[@]}"; do
  wait_for "processed $id" 60 || fail "file $id was not processed within 60 s: $(curl -sS "$base/files/$id")"
done

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || fail "SIGTERM ended it with exit code $rc, not 0"
echo "production tree: ok (npm ci --omit=dev, plain node, an image and a CSV processed, SIGTERM exit 0)"

# The package as users get it: `npm pack`, installed into an empty project, whose `npx weft start app.js` runs ours.
consumer=$work/consumer
mkdir -p "$consumer"
tarball=$(npm pack --silent --pack-destination "$work" | tail -n 1)
(
  cd "$consumer"
  npm init -y >/dev/null
  npm install --no-audit --no-fund --loglevel=error "$work/$tarball" >/dev/null
  printf '%s\n' "require('node:http').createServer((q, r) => r.end('hello from ' + process.pid)).listen(Number(process.env.PORT), '127.0.0.1');" >app.js
)
port=$(free_port)
(
  cd "$consumer"
  # npx runs the project's own `weft` (node_modules/.bin), on a Node >= 22 (the PATH's first node).
  PATH="$(dirname "$node_bin"):$PATH" PORT=$port WEFT_RUNTIME_DIR="$work/run" \
    exec setsid npx --no-install weft start app.js --workers 2 --name consumer
) >"$work/service.log" 2>&1 &
pid=$!
wait_for "curl -fsS -o /dev/null http://127.0.0.1:$port/ 2>/dev/null" 60 || fail "npx weft start app.js did not serve within 60 s"
curl -fsS "http://127.0.0.1:$port/" | grep -q '^hello from ' || fail "the consumer's app answered something else"
# Stopped the way the docs say (npm, and so npx, does not pass SIGTERM on to the command it runs).
(cd "$consumer" && PATH="$(dirname "$node_bin"):$PATH" WEFT_RUNTIME_DIR="$work/run" npx --no-install weft stop --name consumer) >/dev/null
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || fail "npx weft start: weft stop ended it with exit code $rc, not 0"
echo "package: ok ($tarball installed into an empty project; npx weft start app.js served; npx weft stop: exit 0)"

if docker info >/dev/null 2>&1; then
  docker build -q -t weft-files-ci "$root" >/dev/null
  cid=$(docker run -d -p "127.0.0.1::3000" weft-files-ci)
  dport=$(docker port "$cid" 3000/tcp | head -n 1 | sed 's/.*://')
  base="http://127.0.0.1:$dport"
  wait_for "curl -fsS -o /dev/null $base/health/ready 2>/dev/null" 90 || { docker logs "$cid" >&2; docker rm -f "$cid" >/dev/null; fail "the image was not ready"; }
  answer=$(curl -fsS -T "$work/photo.jpg" "$base/files?name=photo.jpg")
  id=$("$node_bin" -p "JSON.parse(process.argv[1]).id" "$answer")
  wait_for "processed $id" 60 || { docker rm -f "$cid" >/dev/null; fail "the image did not process an upload"; }
  docker stop -t 40 "$cid" >/dev/null
  code=$(docker inspect -f '{{.State.ExitCode}}' "$cid")
  docker rm "$cid" >/dev/null
  [ "$code" = 0 ] || fail "docker stop ended the container with exit code $code"
  echo "image: ok (built, an upload processed, docker stop exit 0)"
else
  echo "image: not built (no docker daemon answers here); the production tree above is what it runs"
fi
