#!/usr/bin/env bash
# Runs Complement's federation tests against this checkout without Docker: the shared driver's run.sh
# (DRIVER, e.g. ../shared/complement), changed where federation needs it. Used by
# `npm run complement:federation` (scripts/complement.mjs).
#
# usage: run.sh PROJECT_CHECKOUT
#   env: DRIVER     the shared driver's folder (src/ = Complement, external_deployment.go, summarize.py)
#        OUT        where results go (PROJECT_CHECKOUT/.complement-federation by default)
#        TOP_RUN, CSAPI_RUN, MSC3902_RUN  go test -run regexes for tests/, tests/csapi, tests/msc3902;
#                   a package runs only when its regex is set
#        PORTS      port range for the servers (default 19300-19399; two ports per server)
# Differences from the shared run.sh: a second overlay file (myelin_federation.go: Complement's CA for
# the servers), the project's start-server.sh (HTTPS with that CA, names of the other servers), and the
# packages chosen by the *_RUN variables. Writes OUT/results.txt, OUT/failures.txt, the `go test -json`
# streams and OUT/logs/ (server logs of failed tests).
set -u
here=$(cd "$(dirname "$0")" && pwd)
driver=$(cd "${DRIVER:?set DRIVER to the shared complement folder}" && pwd)
export PROJECT_CHECKOUT=$(cd "${1:-.}" && pwd)
out=${OUT:-$PROJECT_CHECKOUT/.complement-federation}; mkdir -p "$out"; out=$(cd "$out" && pwd)
cdir="$driver/src"
run=$(mktemp -d -t complement-fed.XXXXXX)
cleanup() {
  [ -f "$run/pids" ] && while read -r pid; do kill -0 -- "-$pid" 2>/dev/null && kill -- "-$pid"; done <"$run/pids"
  sleep 1
  [ -f "$run/pids" ] && while read -r pid; do kill -0 -- "-$pid" 2>/dev/null && kill -9 -- "-$pid"; done <"$run/pids"
  rm -rf "$out/logs"; mkdir -p "$out/logs"
  for d in "$run"/*-hs*/; do [ -d "$d" ] && rm -rf "$d/data" && mv "$d" "$out/logs/"; done
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# OldDeploy(t, b.BlueprintCleanHS) (one clean server) goes through the custom deployer too.
sed 's|return testPackage.OldDeploy(t, blueprint)|if customDeployer != nil \&\& blueprint.Name == "clean_hs" { return customDeployer(t, 1, testPackage.Config) }; return testPackage.OldDeploy(t, blueprint)|' \
  "$cdir/test_main.go" >"$run/test_main.go"
cat >"$run/overlay.json" <<JSON
{"Replace": {"$cdir/zz_external_deployment.go": "$driver/external_deployment.go",
             "$cdir/zzz_myelin_federation.go": "$here/myelin_federation.go",
             "$cdir/test_main.go": "$run/test_main.go"}}
JSON

export COMPLEMENT_BASE_IMAGE=external-process   # required by Complement's config, unused here
export COMPLEMENT_EXT_START="${COMPLEMENT_EXT_START:-$here/start-server.sh}" COMPLEMENT_EXT_RUNDIR="$run"
export COMPLEMENT_SPAWN_HS_TIMEOUT_SECS=${COMPLEMENT_SPAWN_HS_TIMEOUT_SECS:-90}

packages=()
[ -n "${TOP_RUN:-}" ] && packages+=("tests:top:$TOP_RUN")
[ -n "${CSAPI_RUN:-}" ] && packages+=("tests/csapi:csapi:$CSAPI_RUN")
[ -n "${MSC3902_RUN:-}" ] && packages+=("tests/msc3902:msc3902:$MSC3902_RUN")
[ ${#packages[@]} -gt 0 ] || { echo "set TOP_RUN, CSAPI_RUN or MSC3902_RUN" >&2; exit 2; }

ports=${PORTS:-19300-19399}; lo=${ports%-*}; hi=${ports#*-}
slice=$(( (hi - lo + 1) / ${#packages[@]} ))
cd "$cdir"
pids=() streams=() i=0
for p in "${packages[@]}"; do
  dir=${p%%:*}; rest=${p#*:}; label=${rest%%:*}; regex=${rest#*:}
  go test -overlay "$run/overlay.json" -c -o "$run/$label.test" "./$dir" || exit 3
  plo=$((lo + i * slice)); phi=$((plo + slice - 1)); i=$((i + 1))
  (cd "$dir" && COMPLEMENT_EXT_PORTS=$plo-$phi go tool test2json -p "$dir" "$run/$label.test" \
     -test.v=test2json -test.count=1 -test.timeout=75m -test.run "$regex" >"$out/$label.json" 2>&1) &
  pids+=($!); streams+=("$out/$label.json")
done
wait "${pids[@]}"
python3 "$driver/summarize.py" "${streams[@]}" >"$out/results.txt"
python3 "$driver/failures.py" "${streams[@]}" >"$out/failures.txt"
tail -3 "$out/results.txt"
