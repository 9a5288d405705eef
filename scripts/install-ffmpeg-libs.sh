#!/usr/bin/env bash
# FFmpeg 5.1 shared libraries, which torchcodec needs for torchaudio.load (and so stable-audio-tools'
# dataset classes) with torch >= 2.9 - see docs/dependencies.md. Idempotent; needs root and apt-get,
# otherwise it only explains what is missing. Used by `make install` and the container definition.
set -euo pipefail
debs="libavutil57 libavcodec59 libavformat59 libavdevice59 libavfilter8 libswscale6 libswresample4"
if ldconfig -p 2>/dev/null | grep -q 'libavdevice\.so\.'; then
    exit 0
fi
if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
    echo "note: torchaudio.load (stable-audio-tools' datasets) needs FFmpeg 4-8 shared libraries: install $debs" >&2
    exit 0
fi
echo "installing FFmpeg 5.1 shared libraries for torchcodec"
apt_install() { apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $debs >/dev/null; }
apt_install || { apt-get -o DPkg::Lock::Timeout=600 update -qq && apt_install; } \
    || echo "warning: could not install $debs: torchaudio.load (stable-audio-tools' datasets) will fail" >&2
