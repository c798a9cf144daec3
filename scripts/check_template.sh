#!/usr/bin/env bash
# Checks the AWS deployment (deploy/aws/template.yaml) with AWS's own tools:
#   cfn-lint with the informational checks, `sam validate --lint`, `sam build`
# and reports the size of the Lambda package that `sam build` made.
#
# Usage: scripts/check_template.sh             install the tools if needed, run the checks
#        scripts/check_template.sh --install   only install the tools (scripts/test.sh does
#                                              this; tests/test_template.py runs the checks)
#
# The tools live in their own venv, .venv-sam, made with Python 3.13: SAM CLI pins
# dependencies that would fight the project's, and 3.13 is the Lambda runtime's version,
# which the package build needs (deploy/aws/function/Makefile compiles bytecode for it).
# Needs PyPI. No AWS account or credentials: nothing here talks to AWS.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Pinned so that a new linter release cannot break CI overnight; bump them on purpose.
TOOLS=(aws-sam-cli==1.170.0 cfn-lint==1.58.0)
VENV=.venv-sam
export SAM_CLI_TELEMETRY=0

find_python313() {
    local candidate
    for candidate in "${PYTHON313:-}" python3.13 \
            "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.13*/bin/python3.13 \
            /usr/local/bin/python3.13 /usr/bin/python3.13; do
        # A pyenv shim exists even when that version is not selected, and then fails.
        if [ -n "$candidate" ] && "$candidate" -c \
                'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

install_tools() {
    if [ -x "$VENV/bin/python3.13" ] && [ "$(cat "$VENV/.tools" 2>/dev/null)" = "${TOOLS[*]}" ]; then
        return 0  # already there
    fi
    local python
    if ! python=$(find_python313); then
        echo "check_template: Python 3.13 not found (the Lambda runtime's version, needed by" \
             "sam build); install it or set PYTHON313=/path/to/python3.13" >&2
        return 1
    fi
    echo "check_template: installing ${TOOLS[*]} into $VENV (with $python)"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
    echo '*' > "$VENV/.gitignore"  # keep the venv out of git whatever made it
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${TOOLS[@]}"
    echo "${TOOLS[*]}" > "$VENV/.tools"
}

install_tools
if [ "${1:-}" = "--install" ]; then
    exit 0
fi

# The venv's python3.13 is the one `sam build` (the Makefile) uses.
export PATH="$ROOT/$VENV/bin:$PATH"
cd deploy/aws

echo "== cfn-lint --include-checks I"
cfn-lint --include-checks I -- template.yaml
echo "clean"

echo "== sam validate --lint"
sam validate --lint --region us-east-1 --template-file template.yaml

echo "== sam build"
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
sam build --template-file template.yaml --build-dir "$build/build" >"$build/log" 2>&1 \
    || { cat "$build/log"; exit 1; }
package="$build/build/GatewayFunction"
(cd "$package" && python3.13 -c '
import os, zipfile
with zipfile.ZipFile("../package.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for root, _, files in os.walk("."):
        for name in files:
            z.write(os.path.join(root, name))
')
echo "Build Succeeded: $(cd "$package" && echo *)"
echo "Lambda package: $(du -sh "$package" | cut -f1) (du), $(du -sh --apparent-size "$package" | cut -f1) of files, $(du -sh --apparent-size "$build/build/package.zip" | cut -f1) zipped"
