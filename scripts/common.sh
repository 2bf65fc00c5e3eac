# Sourced by the scripts: one stable cargo target dir and one emulator
# virtualenv outside the clone, so repeated runs (and CI runs on one machine)
# reuse the slow SDK build and the pip install.
CACHE_DIR="${TRAFFIC_MIRRORING_CACHE:-$HOME/.cache/traffic-mirroring}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE_DIR/target}"

# Creates (once per requirements content) a virtualenv under $CACHE_DIR named
# <prefix>-<digest of the requirement files>, installs those files into it,
# and sets VENV to it. A half-made one (no .complete) is made again.
ensure_venv() {
    local prefix="$1" label="$2"
    shift 2
    local digest
    digest=$(cat "$@" | sha256sum | cut -c1-12)
    VENV="$CACHE_DIR/$prefix-$digest"
    if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.complete" ]; then
        echo "installing $label into $VENV" >&2
        rm -rf "$VENV"
        python3 -m venv "$VENV"
        local files=()
        local file
        for file in "$@"; do files+=(-r "$file"); done
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${files[@]}"
        touch "$VENV/.complete"
    fi
}

# The emulator and cargo-lambda (for the end-to-end test): exports
# EMULATOR_PYTHON (run by the Rust test support) and puts the venv's tools on PATH.
setup_emulator() {
    ensure_venv venv "the emulator (moto)" tests/emulator/requirements.txt scripts/requirements-tools.txt
    export EMULATOR_PYTHON="$VENV/bin/python"
    export PATH="$VENV/bin:$PATH"
}

# Only what deploying needs (cargo-lambda, Zig, the SAM CLI; no emulator):
# exports DEPLOY_PYTHON and puts its tools on PATH.
setup_deploy_tools() {
    ensure_venv deploy-venv "the deploy tools (cargo-lambda, ziglang, aws-sam-cli)" scripts/requirements-deploy.txt
    export DEPLOY_PYTHON="$VENV/bin/python"
    export PATH="$VENV/bin:$PATH"
}

# --- infra checks (tests/infra, infra/template.yaml) ---------------------------
# cfn-lint, checkov and pytest for the template checks, apart from the
# emulator's venv (checkov's dependencies clash with the emulator's pinned
# boto3): exports INFRA_PYTHON and INFRA_BIN (the venv's bin, for cfn-lint and
# checkov).
setup_infra_checks() {
    ensure_venv infra-venv "the infra checks (cfn-lint, checkov)" tests/infra/requirements.txt
    export INFRA_PYTHON="$VENV/bin/python"
    export INFRA_BIN="$VENV/bin"
}
# --- end infra checks ----------------------------------------------------------

# --- benchmarks that run the release binary (scripts/storm.sh, scripts/fleet.sh)
# Runs scripts/<name>.py with the emulator's Python. Takes --build (compile
# the release binary first) and --binary PATH (default
# $CARGO_TARGET_DIR/release/traffic-mirroring); everything else goes to the
# Python script. The command line that reproduces the run is passed on in
# $BENCH_COMMAND, for the BENCHMARKS.md section.
run_release_benchmark() {
    local name="$1" title="$2"
    shift 2
    local command="bash scripts/$name.sh" build=0 binary="$CARGO_TARGET_DIR/release/traffic-mirroring"
    local args=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --build) build=1; command+=" --build" ;;
            --binary) binary="$2"; command+=" --binary $(printf '%q' "$2")"; shift ;;
            --binary=*) binary="${1#--binary=}"; command+=" $(printf '%q' "$1")" ;;
            *) args+=("$1"); command+=" $(printf '%q' "$1")" ;;
        esac
        shift
    done
    if [ "$build" = 1 ]; then
        echo "== the release binary for this machine"
        cargo build --locked --release --bin traffic-mirroring
    fi
    if [ ! -x "$binary" ]; then
        echo "no binary at $binary: pass --build, or --binary PATH" >&2
        return 2
    fi
    echo "== $title"
    BENCH_COMMAND="$command" "$EMULATOR_PYTHON" "scripts/$name.py" --binary "$binary" ${args[@]+"${args[@]}"}
}
