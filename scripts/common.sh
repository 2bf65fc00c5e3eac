# Sourced by the scripts: one stable cargo target dir and one emulator
# virtualenv outside the clone, so repeated runs (and CI runs on one machine)
# reuse the slow SDK build and the pip install.
CACHE_DIR="${TRAFFIC_MIRRORING_CACHE:-$HOME/.cache/traffic-mirroring}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE_DIR/target}"

# Creates (once per requirements file content) the emulator's virtualenv and
# exports EMULATOR_PYTHON, which the Rust test support runs.
setup_emulator() {
    local requirements=tests/emulator/requirements.txt
    local digest
    digest=$(sha256sum "$requirements" | cut -c1-12)
    local venv="$CACHE_DIR/venv-$digest"
    if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
        echo "installing the emulator (moto) into $venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        touch "$venv/.complete"
    fi
    export EMULATOR_PYTHON="$venv/bin/python"
}
