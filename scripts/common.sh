# Sourced by the scripts: one stable cargo target dir and one emulator
# virtualenv outside the clone, so repeated runs (and CI runs on one machine)
# reuse the slow SDK build and the pip install.
CACHE_DIR="${TRAFFIC_MIRRORING_CACHE:-$HOME/.cache/traffic-mirroring}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE_DIR/target}"

# Creates (once per requirements content) the virtualenv holding the emulator
# and cargo-lambda, exports EMULATOR_PYTHON (run by the Rust test support) and
# puts the venv's tools (cargo-lambda) on PATH.
setup_emulator() {
    local requirements=tests/emulator/requirements.txt
    local tools=scripts/requirements-tools.txt
    local digest
    digest=$(cat "$requirements" "$tools" | sha256sum | cut -c1-12)
    local venv="$CACHE_DIR/venv-$digest"
    if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
        echo "installing the emulator (moto) into $venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" -r "$tools"
        touch "$venv/.complete"
    fi
    export EMULATOR_PYTHON="$venv/bin/python"
    export PATH="$venv/bin:$PATH"
}

# Creates (once per requirements content) the virtualenv holding only what
# deploying needs (cargo-lambda, Zig, the SAM CLI; no emulator), exports
# DEPLOY_PYTHON and puts its tools on PATH.
setup_deploy_tools() {
    local requirements=scripts/requirements-deploy.txt
    local digest
    digest=$(sha256sum "$requirements" | cut -c1-12)
    local venv="$CACHE_DIR/deploy-venv-$digest"
    if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
        echo "installing the deploy tools (cargo-lambda, ziglang, aws-sam-cli) into $venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        touch "$venv/.complete"
    fi
    export DEPLOY_PYTHON="$venv/bin/python"
    export PATH="$venv/bin:$PATH"
}

# --- infra checks (tests/infra, infra/template.yaml) ---------------------------
# Creates (once per requirements content) the virtualenv holding cfn-lint,
# checkov and pytest for the template checks, apart from the emulator's venv
# (checkov's dependencies clash with the emulator's pinned boto3), and
# exports INFRA_PYTHON and INFRA_BIN (the venv's bin, for cfn-lint and checkov).
setup_infra_checks() {
    local requirements=tests/infra/requirements.txt
    local digest
    digest=$(sha256sum "$requirements" | cut -c1-12)
    local venv="$CACHE_DIR/infra-venv-$digest"
    if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
        echo "installing the infra checks (cfn-lint, checkov) into $venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        touch "$venv/.complete"
    fi
    export INFRA_PYTHON="$venv/bin/python"
    export INFRA_BIN="$venv/bin"
}
# --- end infra checks ----------------------------------------------------------
