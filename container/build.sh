#!/usr/bin/env bash
# Build the Apptainer/Singularity image of stable-audio-tools-ext from container/stable-audio-tools-ext.def.
#
#     container/build.sh [OUTPUT.sif]        (default: stable-audio-tools-ext.sif in the repository root)
#
# - Runs from the repository root whatever the current directory: the definition's %files paths
#   (pyproject.toml, requirements/constraints.txt, stable_audio_tools_ext/ ...) are relative to it.
# - Uses `apptainer` if installed, else `singularity` (set ENGINE=... to choose). On clusters the
#   engine is often a module: `module load apptainer`.
# - Not root: builds with --fakeroot, which needs an entry for you in /etc/subuid and /etc/subgid
#   (ask your admins), or build on a machine where you are root and copy the .sif over.
# - Needs network access to Docker Hub (the nvidia/cuda base image), Ubuntu's archive and PyPI, and
#   about 20 GB of temporary space: point APPTAINER_TMPDIR (SINGULARITY_TMPDIR) at a large local disk
#   if /tmp is small. The finished image is about 7 GB.
# - At the end the build runs the definition's %test (the pins, then a generation on the tiny offline
#   model on CPU); run it again on any machine with `apptainer test stable-audio-tools-ext.sif`.
# - Pinning the base image by digest as well as by tag: look the digest up, e.g.
#       skopeo inspect docker://nvidia/cuda:13.0.1-base-ubuntu22.04 | grep -m1 '"Digest"'
#   and change the From: line to nvidia/cuda:13.0.1-base-ubuntu22.04@sha256:<digest>.
#
# Extra arguments after OUTPUT.sif go to the engine's build command (e.g. --force to overwrite).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
definition=container/stable-audio-tools-ext.def
output=$(realpath -m -- "${1:-$repo_root/stable-audio-tools-ext.sif}")  # relative to where you are
shift $(( $# > 0 ? 1 : 0 ))

engine=${ENGINE:-$(command -v apptainer || command -v singularity || true)}
if [[ -z $engine ]]; then
    echo "error: neither apptainer nor singularity is installed (on a cluster: module load apptainer)" >&2
    exit 1
fi

options=()
if [[ $(id -u) != 0 ]]; then
    options+=(--fakeroot)  # unprivileged build: user namespaces map you to root inside the build
fi

cd "$repo_root"
echo "building $output from $definition with $(basename "$engine") ${options[*]:-}"
"$engine" build ${options[@]+"${options[@]}"} "$@" "$output" "$definition"
echo "done: $output"
echo "try:  $(basename "$engine") run --nv $output --cond-yaml-path example/generation/generate_conditions.yaml --output-dir out"
