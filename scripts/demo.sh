#!/usr/bin/env bash
# The demo: the offline drift report of the bundled estate, then the daemon against the local
# ECS emulator serving that estate, through the real SDK. DEMO_SECONDS=N stops after N seconds.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy

echo "== sgwatch report (offline snapshot vs baseline, config/demo/) =="
$BIN/sgwatch report --baseline config/demo/baseline --snapshot config/demo/snapshot
status=$?
[ "$status" -le 1 ] || exit "$status"   # 1 = drift found, which is the point of the demo

echo
echo "== sgwatch run against the ECS emulator on 127.0.0.1:18080 =="
$BIN/python -m sgwatch.emulator --snapshot config/demo/snapshot --port 18080 --key demo-ak:demo-secret \
  >/dev/null 2>&1 &
emulator=$!
trap 'kill $emulator 2>/dev/null' EXIT
$BIN/python - <<'PY' || exit 1
import time, urllib.request, urllib.error
for _ in range(100):
    try:
        urllib.request.urlopen("http://127.0.0.1:18080/_emulator/stats", timeout=1)
        break
    except urllib.error.HTTPError:
        break
    except OSError:
        time.sleep(0.1)
else:
    raise SystemExit("the emulator did not start")
PY
rm -rf .demo-state   # a fresh state, so the daemon reports each drift as detected
export ALIBABA_CLOUD_ACCESS_KEY_ID=demo-ak ALIBABA_CLOUD_ACCESS_KEY_SECRET=demo-secret
export ALIBABA_CLOUD_ECS_METADATA_DISABLED=true
echo "metrics: http://127.0.0.1:9108/metrics   health: /healthz   ready: /readyz   (Ctrl-C stops)"
if [ -n "${DEMO_SECONDS:-}" ]; then
  timeout -s TERM "$DEMO_SECONDS" $BIN/sgwatch run --config config/demo/sgwatch.yaml
  status=$?
  [ "$status" -eq 124 ] && status=0
  exit "$status"
fi
exec_status=0
$BIN/sgwatch run --config config/demo/sgwatch.yaml || exec_status=$?
exit "$exec_status"
