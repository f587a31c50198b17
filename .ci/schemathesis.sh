#!/usr/bin/env bash
# Fuzz the live JSON API against its own OpenAPI schema (/api/schema/, <app>/api/schema.py) with
# schemathesis: no answer may be a 5xx, every answer must match the schema documented for its
# status, and data that breaks the schema (negative mode) must be refused with a 4xx. Runs a
# real gunicorn on a throwaway SQLite database, so it needs no services.
#
#   .ci/schemathesis.sh            # about a minute or two on 2 cores
#   MAX_EXAMPLES=200 SCHEMATHESIS_SEED=1 .ci/schemathesis.sh    # longer, another seed
#   SCHEMATHESIS_DATABASE_URL=postgres://…/empty_db .ci/schemathesis.sh
#
# The agent operations run with a real node token, the scheduler's with a real scheduler token,
# /auth/ with a CSRF cookie and header, and /api/v1/me* signed in as the demo contributor alice.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

BIN="${VENV_BIN:-$ROOT/.venv/bin}"
MAX_EXAMPLES="${MAX_EXAMPLES:-40}"
# A fixed seed keeps CI reproducible; set SCHEMATHESIS_SEED to explore other inputs.
SEED="${SCHEMATHESIS_SEED:-20250101}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/portal-schemathesis.XXXXXX")"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# A fresh portal of its own: database, cache, broker folders and secret key under $WORK. The
# demo sign-in (DEBUG + DEMO_FLEET) gives /api/v1/me* a session; the rate limits are raised so
# the fuzzer reaches validation instead of answering 429 after the first minute.
export DEBUG=true
export DEMO_FLEET=true
export VAR_DIR="$WORK/var"
# SCHEMATHESIS_DATABASE_URL may name an empty database of the caller's (e.g. PostgreSQL) instead.
export DATABASE_URL="${SCHEMATHESIS_DATABASE_URL:-sqlite:///$WORK/portal.sqlite3}"
export CACHE_URL="filecache://$WORK/cache"
export CELERY_BROKER_URL="filesystem://"
export CELERY_BROKER_DIR="$WORK/broker"
export TELEMETRY_RATE_PER_MIN=1000000
export SIWE_VERIFY_RATE_PER_MIN=1000000
export SIWE_NONCE_RATE_PER_MIN=1000000
export ENROLL_RATE_PER_MIN=1000000
export BAD_TOKEN_RATE_PER_MIN=1000000
export LOG_LEVEL=ERROR
# Claims configured (a public test key, an address nobody deployed to): vouchers only need
# these, so /api/v1/me/claims answers 201/409 instead of its 503 chain_not_configured.
export CHAIN_ID=31337
export DISTRIBUTOR_ADDRESS=0x5FbDB2315678afecb367f032d93F642f64180aa3
export CLAIM_SIGNER_KEY=0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d
unset DOTENV_PATH SECRET_KEY SECRET_KEY_FILE ALLOWED_HOSTS
# Straight to the local server, whatever proxy the CI environment names.
export NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"

PORT="$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"

echo "schemathesis: migrating a fresh database (scratch files in $WORK)"
"$BIN/python" manage.py migrate --noinput --verbosity 0

"$BIN/gunicorn" portal.wsgi --bind "127.0.0.1:$PORT" --workers 2 --timeout 60 \
    --log-level warning >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 60); do
    if curl -fsS -o /dev/null "$BASE/healthz" 2>/dev/null; then break; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        cat "$WORK/server.log" >&2
        echo "schemathesis: the server did not start" >&2
        exit 1
    fi
    sleep 0.5
done
curl -fsS -o /dev/null "$BASE/healthz"

json_field() { "$BIN/python" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
cookie() { awk -v name="$1" '$6 == name { value = $7 } END { print value }' "$WORK/cookies"; }

# Signed in as the demo contributor alice: a CSRF cookie from /auth/nonce, then /auth/demo.
curl -fsS -c "$WORK/cookies" -o /dev/null "$BASE/auth/nonce"
ADDRESS="$(curl -fsS -b "$WORK/cookies" -c "$WORK/cookies" -X POST "$BASE/auth/demo" \
    -H "Content-Type: application/json" -H "X-CSRFToken: $(cookie csrftoken)" \
    -d '{"name": "alice"}' | json_field address)"
SESSION_ID="$(cookie sessionid)"
CSRF="$(cookie csrftoken)"
[ -n "$SESSION_ID" ] && [ -n "$CSRF" ] || { echo "schemathesis: demo sign-in failed" >&2; exit 1; }

# alice's machine, enrolled like an agent, with the GPU that the schema's examples name.
CODE="$("$BIN/python" manage.py create_enrollment_code "$ADDRESS" | tail -n 1)"
NODE_TOKEN="$(curl -fsS -X POST "$BASE/api/v1/agent/enroll" -H "Content-Type: application/json" \
    -d '{"enrollment_code": "'"$CODE"'", "hostname": "fuzz-box", "agent_version": "ci",
         "gpus": [{"uuid": "GPU-11111111-2222-3333-4444-555555555555",
                   "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559}]}' \
    | json_field node_token)"
SCHEDULER_TOKEN="$("$BIN/python" manage.py create_service_token --scope scheduler \
    | tail -n 1 | awk '{ print $NF }')"

status=0
fuzz() {
    local name="$1"
    shift
    echo
    echo "==== schemathesis: $name"
    # From $WORK, so that its hypothesis database and reports stay out of the checkout.
    # The tokens and cookies travel in -H headers, so schemathesis must not generate (or
    # leave out) the security parameters itself: a case "without" them would still send them.
    (cd "$WORK" && "$BIN/schemathesis" --config-file "$ROOT/.ci/schemathesis.toml" \
        run "$BASE/api/schema/" \
        --checks not_a_server_error,response_schema_conformance,negative_data_rejection \
        --mode all --phases examples,coverage,fuzzing \
        --generation-with-security-parameters false \
        --max-examples "$MAX_EXAMPLES" --seed "$SEED" \
        --workers 2 --request-timeout 20 --no-color \
        "$@") || status=1
}

# One worker thread: the agent's item-by-item lists take any JSON item, and generating those
# runs ast.parse inside hypothesis, which Python 3.11 cannot run in two threads at once
# ("SystemError: AST constructor recursion depth mismatch", CPython gh-106905).
fuzz "agent" --include-path-regex '^/api/v1/agent/' -H "Authorization: Bearer $NODE_TOKEN" \
    --workers 1
fuzz "scheduler" --include-path-regex '^/api/v1/scheduler/' \
    -H "Authorization: Bearer $SCHEDULER_TOKEN"
fuzz "auth" --include-path-regex '^/auth/' -H "Cookie: csrftoken=$CSRF" -H "X-CSRFToken: $CSRF"
fuzz "me" --include-path-regex '^/api/v1/me' \
    -H "Cookie: sessionid=$SESSION_ID; csrftoken=$CSRF" -H "X-CSRFToken: $CSRF"
# Public: no credentials at all (tests/test_epoch_manifests.py checks a real manifest against
# its schema; this fuzz database has no settled epoch).
fuzz "epochs" --include-path-regex '^/api/v1/epochs'
# Requests never compute the public figures (a worker does; none runs here): compute them first.
"$BIN/python" manage.py compute_public_stats > /dev/null
fuzz "public" --include-path-regex '^/api/v1/(network|leaderboard)$'

if grep -q "Traceback\|Internal Server Error" "$WORK/server.log"; then
    echo
    echo "==== errors the server logged"
    cat "$WORK/server.log"
    status=1
fi

if [ "$status" -ne 0 ]; then
    echo "schemathesis: FAILED (seed $SEED; rerun with SCHEMATHESIS_SEED=$SEED)" >&2
else
    echo "schemathesis: no 5xx, every answer as documented, bad data refused (seed $SEED)"
fi
exit "$status"
